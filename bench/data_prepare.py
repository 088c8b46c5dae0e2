"""Throughput of ``esi data prepare`` against a plain ``wfdb.rdsamp`` loop on the same records.

Generates N synthetic records (PTB-XL layout, default 2 000) once, then runs, each in its own process so the
peak memory (ru_maxrss) belongs to that method alone:
  - rdsamp: a loop of ``wfdb.rdsamp`` over every record (read only: the floor any converter pays);
  - prepare: ``esi.data.prepare.prepare`` (read + resample + filter + harmonise labels + write the store),
    in-process and with worker processes.
Prints records/second and peak memory side by side.

    python bench/data_prepare.py [--records 2000] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one(method: str, root: Path, out: Path, workers: int) -> dict:
    t0 = time.perf_counter()
    if method == "rdsamp":
        import pandas as pd
        import wfdb

        db = pd.read_csv(root / "ptbxl_database.csv")
        n = 0
        for name in db["filename_hr"]:
            wfdb.rdsamp(str(root / name))
            n += 1
    else:
        from esi.data.prepare import prepare

        s = prepare("ptbxl", root, out, workers=workers, progress=False, overwrite=True)
        n = s.records_seen
    dt = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"method": method, "workers": workers, "records": n, "seconds": dt, "records_per_s": n / dt,
            "peak_rss_mb": peak_kb / 1024, "peak_child_rss_mb": child_kb / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--one", choices=["rdsamp", "prepare"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.root, args.out, args.workers)))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="esi-bench-prepare-"))
    root = work / "synthetic"
    from esi.data.synthetic import generate_dataset

    subjects = max(1, args.records // 5)
    t0 = time.perf_counter()
    generate_dataset(root, subjects=subjects, records_per_subject=args.records // subjects, seed=0,
                     workers=args.workers, progress=False)
    gen_s = time.perf_counter() - t0
    print(f"generated {args.records} synthetic records in {gen_s:.1f} s "
          f"({args.records / gen_s:.1f} records/s, "
          f"{args.workers} workers) -> {root}")

    rows = []
    for method, workers in (("rdsamp", 0), ("prepare", 0), ("prepare", args.workers)):
        cmd = [sys.executable, __file__, "--one", method, "--root", str(root), "--out",
               str(work / f"store-{workers}"), "--workers", str(workers)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))

    base = rows[0]["records_per_s"]
    print(f"\n{'method':<22}{'records':>9}{'seconds':>10}{'records/s':>11}{'vs rdsamp':>11}{'peak MB':>10}"
          f"{'workers MB':>12}")
    for r in rows:
        label = r["method"] + (f" ({r['workers']} workers)" if r["workers"] else "")
        print(f"{label:<22}{r['records']:>9}{r['seconds']:>10.1f}{r['records_per_s']:>11.1f}"
              f"{r['records_per_s'] / base:>11.2f}{r['peak_rss_mb']:>10.0f}{r['peak_child_rss_mb']:>12.0f}")
    print("\nrdsamp only reads; prepare also resamples, filters, harmonises labels and writes "
          "float16 shards.")


if __name__ == "__main__":
    main()
