"""How far measure.py's intervals can be trusted: PR, QRS and QT against LUDB's cardiologist delineation.

LUDB (Lobachevsky University Electrocardiography Database) marks, per lead, the onset '(' and offset ')'
of each P ('p'), QRS ('N') and T ('t') wave. The lead-II annotation (``N.ii``) gives per-beat PR (P onset to
QRS onset), QRS (onset to offset) and QT (QRS onset to T offset); the record's reference value is the
median over its annotated beats. measure.py measures on the 12-lead median beat (spatial onsets), so its
QRS is expected to run a little wider than a single-lead annotation; ``qrs_ii_ms`` measures lead II alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from esi.data import measure
from esi.data.compare.features import shared_beat
from esi.data.record import reorder_leads
from esi.errors import DataError, DatasetNotFoundError

log = logging.getLogger(__name__)
INTERVALS = ("pr_ms", "qrs_ms", "qrs_ii_ms", "qt_ms")


def annotated_intervals(samples: np.ndarray, symbols: list[str], fs: float) -> dict[str, float]:
    """Median PR, QRS and QT (ms) over the beats of one LUDB annotation (NaN where no beat has the wave)."""
    waves: list[tuple[str, int, int]] = []  # (symbol, onset, offset) in time order
    for k, sym in enumerate(symbols):
        if sym in ("p", "N", "t") and 0 < k < len(symbols) - 1 and symbols[k - 1] == "(" \
                and symbols[k + 1] == ")":
            waves.append((sym, int(samples[k - 1]), int(samples[k + 1])))
    pr, qrs, qt = [], [], []
    for i, (sym, on, off) in enumerate(waves):
        if sym != "N":
            continue
        qrs.append(off - on)
        # the P wave of this beat is the wave just before its QRS; the T wave the one just after
        if i > 0 and waves[i - 1][0] == "p":
            pr.append(on - waves[i - 1][1])
        if i + 1 < len(waves) and waves[i + 1][0] == "t":
            qt.append(waves[i + 1][2] - on)
    ms = 1000.0 / fs

    def med(v: list[int]) -> float:
        return float(np.median(v) * ms) if v else float("nan")

    return {"pr_ms": med(pr), "qrs_ms": med(qrs), "qrs_ii_ms": med(qrs), "qt_ms": med(qt)}


def measured_intervals(signal: np.ndarray, fs: float) -> dict[str, float]:
    """measure.py's PR, QRS (12-lead and lead II) and QT (ms) of one (12, n) signal; NaN where it fails."""
    x = np.ascontiguousarray(signal, dtype=np.float64)
    fns = {"pr_ms": lambda: measure.pr_interval_ms(x, fs), "qrs_ms": lambda: measure.qrs_width_ms(x, fs),
           "qrs_ii_ms": lambda: measure.qrs_width_ms(x, fs, lead="II"),
           "qt_ms": lambda: measure.qt_interval_ms(x, fs)}
    out = {}
    with shared_beat():
        for name, fn in fns.items():
            try:
                v = fn()
            except DataError:
                v = None
            out[name] = float(v) if v is not None and np.isfinite(v) else float("nan")
    return out


def _records(root: Path, limit: int | None) -> list[Path]:
    if not root.is_dir():
        raise DatasetNotFoundError(f"--ludb {root}: no such folder; pass the folder of LUDB's N.hea / N.dat / "
                                   "N.ii files (tests/fixtures/real_benchmark/ludb)")
    heads = sorted((p for p in root.glob("*.hea") if p.with_suffix(".ii").is_file()),
                   key=lambda p: (len(p.stem), p.stem))
    if not heads:
        raise DatasetNotFoundError(f"--ludb {root}: no record with a lead-II annotation (N.hea + N.ii); pass "
                                   "LUDB's folder (tests/fixtures/real_benchmark/ludb)")
    if limit is not None and limit < len(heads):
        heads = [heads[int(i)] for i in np.linspace(0, len(heads) - 1, limit).round().astype(int)]
    return heads


def _errors(pairs: list[tuple[float, float]], n_records: int) -> dict[str, Any]:
    ann = np.array([a for a, _ in pairs])
    got = np.array([m for _, m in pairs])
    both = np.isfinite(ann) & np.isfinite(got)
    err = got[both] - ann[both]
    out: dict[str, Any] = {"n_records": n_records, "n_annotated": int(np.isfinite(ann).sum()),
                           "n_measured": int(both.sum()),
                           "n_failed": int((np.isfinite(ann) & ~np.isfinite(got)).sum()),
                           "n_found_not_annotated": int((~np.isfinite(ann) & np.isfinite(got)).sum())}
    if err.size:
        out.update({"mae_ms": float(np.median(np.abs(err))), "bias_ms": float(np.median(err)),
                    "mean_abs_ms": float(np.mean(np.abs(err))), "p90_abs_ms": float(np.percentile(np.abs(err), 90)),
                    "n_off_by_50ms": int((np.abs(err) > 50).sum()),
                    "annotated_median_ms": float(np.median(ann[both])),
                    "measured_median_ms": float(np.median(got[both]))})
    return out


def ludb_check(root: str | Path, *, limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Compare measure.py's PR, QRS and QT with LUDB's lead-II delineation on the records under ``root``.

    Returns per interval the median absolute error (``mae_ms``), the bias (median of measured - annotated),
    the mean and 90th-percentile absolute error, and how many records were annotated / measured / failed;
    ``records`` holds the per-record pairs for plotting. ``limit`` takes that many records spread evenly.
    """
    import wfdb
    from tqdm import tqdm

    heads = _records(Path(root), limit)
    t0 = time.perf_counter()
    per_record = []
    for head in tqdm(heads, desc="LUDB check", unit="rec", disable=not progress):
        stem = str(head.with_suffix(""))
        try:
            rec = wfdb.rdrecord(stem)
            ann = wfdb.rdann(stem, "ii")
        except Exception as exc:  # wfdb raises ValueError/OSError/IndexError for a damaged file
            raise DataError(f"LUDB record {head.stem} is unreadable ({type(exc).__name__}: {exc})", path=stem,
                            fix="restore the record from tests/fixtures/real_benchmark/ludb") from exc
        signal = reorder_leads(np.nan_to_num(rec.p_signal.T), list(rec.sig_name), path=stem)
        row = {"record": head.stem, "annotated": annotated_intervals(ann.sample, list(ann.symbol), rec.fs),
               "measured": measured_intervals(signal, rec.fs)}
        per_record.append(row)
    elapsed = time.perf_counter() - t0
    log.info("LUDB check: %d records in %.1f s (%.1f records/s)", len(heads), elapsed,
             len(heads) / max(elapsed, 1e-9))
    result: dict[str, Any] = {"root": str(root), "n_records": len(per_record), "records": per_record}
    for name in INTERVALS:
        pairs = [(r["annotated"][name], r["measured"][name]) for r in per_record]
        result[name] = _errors(pairs, len(per_record))
    return result
