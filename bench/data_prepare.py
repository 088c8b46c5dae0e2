"""Throughput of ``esi data prepare`` against a plain ``wfdb.rdsamp`` loop, before and after, in one run.

Generates N synthetic records (PTB-XL layout, default 2 000) once, then runs each method in its own process
(so the peak memory, ru_maxrss, belongs to that method alone):
  - rdsamp: a loop of ``wfdb.rdsamp`` over every record (read only: the floor any converter pays);
  - read: ESI's record reader alone (``reader.read`` over every reference: header parsing, checks, scaling,
    lead order), the path the input checks sit on;
  - prepare: ``esi.data.prepare.prepare`` (read + resample + filter + harmonise labels + write the store),
    in-process and with worker processes.
"before" is the same methods on the ``esi`` package of a git revision (default HEAD, extracted with
``git archive`` into the work folder and put first on PYTHONPATH), "after" the working tree. Each round
runs every method once, before and after alternating, so both see the same machine load; ratios (vs
rdsamp, after/before) are computed within a round and reported as the median and range over ``--repeat``
rounds, rec/s as the best. The machine may be shared: compare ratios, not absolute figures across runs.

    python bench/data_prepare.py [--records 2000] [--workers 2] [--before HEAD] [--repeat 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _one(method: str, root: Path, out: Path, workers: int) -> dict:
    import esi

    me = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = me.ru_utime + me.ru_stime
    t0 = time.perf_counter()
    if method == "rdsamp":
        import pandas as pd
        import wfdb

        db = pd.read_csv(root / "ptbxl_database.csv")
        n = 0
        for name in db["filename_hr"]:
            wfdb.rdsamp(str(root / name))
            n += 1
    elif method == "read":
        from esi.data.readers import get_reader

        reader = get_reader("ptbxl")
        n = 0
        for ref in reader.list_refs(root):
            reader.read(ref)
            n += 1
    else:
        from esi.data.prepare import prepare

        s = prepare("ptbxl", root, out, workers=workers, progress=False, overwrite=True)
        n = s.records_seen
    dt = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
    return {"method": method, "workers": workers, "records": n, "seconds": dt, "records_per_s": n / dt,
            "cpu_s": cpu, "peak_rss_mb": me.ru_maxrss / 1024, "peak_child_rss_mb": kids.ru_maxrss / 1024,
            "esi": str(Path(esi.__file__).parent)}


def _extract(rev: str, work: Path) -> Path:
    """The ``esi`` package of git revision ``rev``, extracted under ``work``."""
    dest = work / f"esi-{rev.replace('/', '_')}"
    if not (dest / "esi" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "esi"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _run(method: str, workers: int, root: Path, out: Path, pythonpath: Path | None) -> dict:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--one", method, "--root", str(root), "--out", str(out),
           "--workers", str(workers)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=str(out.parent))
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", default="HEAD", help="git revision to compare with ('' to skip)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (every method once per round)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--one", choices=["rdsamp", "read", "prepare"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.root, args.out, args.workers)))
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="esi-bench-prepare-"))
    root = work / "synthetic"
    if not (root / "ptbxl_database.csv").exists():
        from esi.data.synthetic import generate_dataset

        subjects = max(1, args.records // 5)
        t0 = time.perf_counter()
        generate_dataset(root, subjects=subjects, records_per_subject=args.records // subjects, seed=0,
                         workers=args.workers, progress=False)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.records} synthetic records in {gen_s:.1f} s ({args.records / gen_s:.1f} records/s, "
              f"{args.workers} workers) -> {root}")
    versions = [("after", None)]
    if args.before:
        versions.insert(0, (f"before ({args.before})", _extract(args.before, work)))
    plan = [("rdsamp", 0, "", None)]
    for method, workers in (("read", 0), ("prepare", 0), ("prepare", args.workers)):
        plan += [(method, workers, label, path) for label, path in versions]
    rounds: list[dict[tuple, dict]] = []
    for _ in range(max(1, args.repeat)):
        runs: dict[tuple, dict] = {}
        for method, workers, label, path in plan:
            out = work / f"store-{method}-{workers}-{'before' if path else 'after'}"
            runs[(method, workers, label)] = _run(method, workers, root, out, path) | {"version": label}
        rounds.append(runs)
        _report(rounds, plan, versions[0][0] if len(versions) > 1 else None)
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (on a shared machine compare the ratios "
          "of one round, not absolute figures across runs)")
    print("rdsamp and read only read; prepare also resamples, filters, harmonises labels and writes float16 "
          "shards. 'read' is where the input checks sit: its after/before ratio is their cost. cpu s: user+system "
          "seconds of the process and its workers (less sensitive to other load than the wall clock).")


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _report(rounds: list[dict[tuple, dict]], plan: list[tuple], before_label: str | None) -> None:
    """Per method: the best rec/s of all rounds, and the ratios vs rdsamp / vs before computed within each
    round (median and range over the rounds)."""
    print(f"\nafter {len(rounds)} round(s), methods interleaved in each; ratios per round: median (min-max)")
    print(f"{'method':<40}{'rec/s':>8}{'cpu s':>7}{'vs rdsamp':>20}{'vs before':>20}{'peak MB':>9}{'workers MB':>11}")
    for method, workers, label, _ in plan:
        key = (method, workers, label)
        runs = [r[key] for r in rounds]
        best = max(runs, key=lambda r: r["records_per_s"])
        vs_rdsamp = [r[key]["records_per_s"] / r[("rdsamp", 0, "")]["records_per_s"] for r in rounds]
        vs_before = ""
        if before_label and label == "after":
            vs_before = _spread([r[key]["records_per_s"] / r[(method, workers, before_label)]["records_per_s"]
                                 for r in rounds])
        name = method + (f" ({workers} workers)" if workers else "") + (f", {label}" if label else "")
        print(f"{name:<40}{best['records_per_s']:>8.1f}{best['cpu_s']:>7.1f}{_spread(vs_rdsamp):>20}"
              f"{vs_before:>20}{best['peak_rss_mb']:>9.0f}{best['peak_child_rss_mb']:>11.0f}")

if __name__ == "__main__":
    main()
