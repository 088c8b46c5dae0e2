"""Benchmark of the validation signal-statistics pass: records/second and peak memory per store size.

    .venv/bin/python bench/validate.py                  # 2 000 and 20 000 records
    .venv/bin/python bench/validate.py --sizes 2000 --keep /tmp/bench-stores

Stores are written directly (random but realistic 12-lead signals from tests/validation/conftest.py, float16
shards of 1 000 records), independent of the synthetic generator. Each size is measured in a fresh
subprocess so peaks do not carry over:

* records/s of ``signal_statistics`` (batch 256);
* tracemalloc peak (Python + numpy heap allocations);
* peak anonymous RSS (RssAnon, sampled after every batch): the process's own memory;
* ru_maxrss: peak resident set including pages of the memory-mapped shards the store has touched
  (page cache, reclaimable; EcgStore.iter_batches releases a shard's map once it has read past it).
A flat tracemalloc/RssAnon peak across sizes is what "streaming" means here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _kit():
    """The store writer and signal generator of the validation tests (a conftest is loaded by path)."""
    spec = importlib.util.spec_from_file_location("esi_validation_storekit",
                                                  ROOT / "tests" / "validation" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def write_bench_store(path: Path, n: int, shard_size: int = 1000, seed: int = 0) -> float:
    """Write an ``n``-record store shard by shard (never all signals in memory); returns seconds."""
    kit = _kit()
    t0 = time.perf_counter()
    shards = (kit.synth_signals(min(shard_size, n - k), seed=seed + k) for k in range(0, n, shard_size))
    kit.write_store(path, shards, kit.manifest_rows(n, prefix="bench"), shard_size=shard_size)
    return time.perf_counter() - t0


def _rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def measure(store: str, batch_size: int, trace: bool) -> dict:
    """Run the statistics pass once in this process and report time and memory."""
    import tracemalloc

    import numpy as np

    from esi.data.store import EcgStore
    from esi.validation import signal_stats

    s = EcgStore(store)
    peak_anon = [_rss_anon_kib()]
    original = EcgStore.iter_batches

    def sampled(self, batch_size=256, indices=None):  # sample RssAnon while each batch is alive
        for idx, batch in original(self, batch_size, indices):
            peak_anon.append(_rss_anon_kib())
            yield idx, batch

    EcgStore.iter_batches = sampled  # type: ignore[method-assign]
    # warm-up: imports (scipy.fft, pandas) and FFT plans are not part of the per-record cost
    signal_stats.batch_statistics(np.zeros((2, 12, s.n_samples), np.float32), s.fs, s.leads)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    df = signal_stats.signal_statistics(s, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    return {"records": len(df), "seconds": seconds, "records_per_s": len(df) / seconds,
            "tracemalloc_peak_mib": traced / 2**20 if traced is not None else None,
            "rss_anon_peak_mib": max(peak_anon) / 1024,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--keep", type=Path, default=None, help="folder for the stores (kept, reused)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.batch_size, args.trace)))
        return
    if args.write:
        print(f"{write_bench_store(Path(args.write[1]), int(args.write[0])):.1f}")
        return

    base = args.keep or Path(tempfile.mkdtemp(prefix="esi-bench-validate-"))
    rows = []
    try:
        for n in args.sizes:
            store = base / f"store-{n}"
            if not (store / "header.json").exists():
                print(f"writing {n} records to {store} ...", flush=True)
                # in a subprocess: Linux carries a parent's peak RSS into children (ru_maxrss survives
                # fork+exec), so the parent that launches the measurements must stay small
                out = subprocess.run([sys.executable, __file__, "--write", str(n), str(store)], check=True,
                                     capture_output=True, text=True, cwd=ROOT).stdout
                print(f"  written in {out.strip().splitlines()[-1]} s", flush=True)
            result = {}
            for trace in (False, True):  # timing without tracemalloc, heap peak with it
                cmd = [sys.executable, __file__, "--worker", str(store), "--batch-size", str(args.batch_size)]
                out = subprocess.run(cmd + (["--trace"] if trace else []), check=True, capture_output=True,
                                     text=True, cwd=ROOT).stdout
                r = json.loads(out.strip().splitlines()[-1])
                if trace:
                    result["tracemalloc_peak_mib"] = r["tracemalloc_peak_mib"]
                else:
                    result.update(r)
            rows.append(result)
            print(f"  {n} records: {result['records_per_s']:.0f} records/s", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)

    print(f"\nsignal-statistics pass, batch {args.batch_size}, 12 x 5000 float16 records")
    header = f"{'records':>8} {'seconds':>8} {'rec/s':>7} {'tracemalloc MiB':>16} {'RssAnon MiB':>12} " \
             f"{'ru_maxrss MiB':>14}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['records']:>8} {r['seconds']:>8.1f} {r['records_per_s']:>7.0f} "
              f"{r['tracemalloc_peak_mib']:>16.1f} {r['rss_anon_peak_mib']:>12.1f} "
              f"{r['ru_maxrss_mib']:>14.1f}")


if __name__ == "__main__":
    main()
