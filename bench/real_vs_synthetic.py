"""Where the synthetic generator differs from real ECGs: the ranked gap table of ``esi data compare``.

Compares the synthetic store ``make run`` writes (default ``.esi/run/store``) with a store of the real-ECG
benchmark records (``tests/fixtures/real_benchmark``, prepared into ``--real`` first when that folder holds no
store), checks measure.py against LUDB's delineation, writes the full report to ``--out`` and prints the
ranked gap table, the per-condition effects (1AVB PR, RBBB/LBBB QRS, AF RR irregularity against each set's
normal records) and the LUDB error figures. About a minute for the 983 records on 2 cores (the machine may be
shared: compare figures of one run). ``--limit`` measures fewer records per store.

    python bench/real_vs_synthetic.py [--synthetic .esi/run/store] [--real /tmp/esi_real_store]
                                      [--out /tmp/esi_compare] [--limit N] [--top 15] [--no-plots]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _real_store(path: Path) -> Path:
    from esi.data.prepare import prepare
    from esi.data.store import is_esi_store

    if not is_esi_store(path):
        print(f"preparing the real benchmark records into {path} ...", flush=True)
        prepare("wfdb", REPO / "tests" / "fixtures" / "real_benchmark", path, workers=1, progress=False)
    return path


def _fmt(v: float | None) -> str:
    from esi.data.compare.report import fmt

    return fmt(v)


def print_gaps(result: dict, top: int) -> None:
    print(f"\nRanked synthetic-vs-real gaps (top {top} of {len(result['gaps'])}; gap = Wasserstein / real IQR)")
    head = f"{'#':>3} {'measurement':<22} {'group':<10} {'synthetic median [IQR]':<30} {'real median [IQR]':<30}" \
           f" {'gap':>6} {'KS':>5} {'fail s/r':>9}"
    print(head)
    print("-" * len(head))
    for g in result["gaps"][:top]:
        s, r = g["synthetic"], g["real"]
        ss = f"{_fmt(s['median'])} [{_fmt(s['q1'])}, {_fmt(s['q3'])}] {g['unit']}"
        rs = f"{_fmt(r['median'])} [{_fmt(r['q1'])}, {_fmt(r['q3'])}] {g['unit']}"
        print(f"{g['rank']:>3} {g['feature']:<22} {g['group']:<10} {ss:<30} {rs:<30} {g['w_norm']:>6.2f} "
              f"{g['ks']:>5.2f} {s['n_failed']:>4}/{r['n_failed']:<4}")


def print_conditions(result: dict) -> None:
    print("\nPer condition (effect = condition median - NORM median of the same set)")
    for name, b in result["conditions"].items():
        if name == "NORM":
            continue
        key = b["key_measure"]
        m = b["measures"][key]
        print(f"  {name:<5} {key:<7} synthetic {_fmt(m['synthetic']['median']):>6} vs NORM "
              f"{_fmt(m['synthetic_norm']['median']):>6} (effect {_fmt(m['synthetic_effect']):>6}, "
              f"n={b['n']['synthetic']})"
              f" | real {_fmt(m['real']['median']):>6} vs NORM {_fmt(m['real_norm']['median']):>6} "
              f"(effect {_fmt(m['real_effect']):>6}, n={b['n']['real']}) | P found "
              f"{100 * b['p_wave_found']['synthetic']:.0f}% / {100 * b['p_wave_found']['real']:.0f}%")


def print_ludb(ludb: dict) -> None:
    print(f"\nmeasure.py vs LUDB lead-II delineation ({ludb['n_records']} records)")
    for name in ("pr_ms", "qrs_ms", "qrs_ii_ms", "qt_ms"):
        e = ludb[name]
        print(f"  {name:<10} measured {e['n_measured']:>3}/{e['n_annotated']:<3} annotated: median abs error "
              f"{_fmt(e.get('mae_ms')):>5} ms, bias {_fmt(e.get('bias_ms')):>5} ms, "
              f"p90 {_fmt(e.get('p90_abs_ms')):>5} ms,"
              f" off by > 50 ms: {e.get('n_off_by_50ms', 0)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--synthetic", type=Path, default=REPO / ".esi" / "run" / "store")
    ap.add_argument("--real", type=Path, default=Path("/tmp/esi_real_store"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/esi_compare"))
    ap.add_argument("--ludb", type=Path, default=REPO / "tests" / "fixtures" / "real_benchmark" / "ludb")
    ap.add_argument("--limit", type=int, default=None, help="records per store (spread evenly)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from esi.data.compare import compare_stores

    t0 = time.perf_counter()
    result = compare_stores(args.synthetic, _real_store(args.real), args.out, limit=args.limit, ludb=args.ludb,
                            progress=False, plots=not args.no_plots)
    wall = time.perf_counter() - t0
    prep = result["preprocessing"]
    print("\npreprocessing:", "identical" if prep["equal"] else f"WARNING {prep['warning']}")
    print_gaps(result, args.top)
    print_conditions(result)
    if "ludb" in result:
        print_ludb(result["ludb"])
    n = sum(v["n_measured"] for v in result["stores"].values())
    print(f"\n{n} records in {wall:.0f} s wall ({result['records_per_s']:.1f} records/s measuring); "
          f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
