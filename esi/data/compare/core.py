"""``compare_stores``: measure two stores the same way and rank where the synthetic one differs from the real."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.compare.features import HIST_EDGES, feature_names, measure_record
from esi.data.compare.stats import (
    KEY_MEASURE,
    MIN_N,
    condition_masks,
    grouped_gaps,
    parse_conditions,
    rank_gaps,
    summarize,
)
from esi.data.record import LEADS
from esi.data.store import EcgStore
from esi.errors import ConfigError

log = logging.getLogger(__name__)
PSD_MAX_HZ = 150.0  # the stored spectra are cut here (the stores are low-passed at 100 Hz)
SOURCE_MEASURES = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qrs_amp_mv[II]", "std_mv[II]", "noise_db",
                   "powerline_peak_db")
CONDITION_MEASURES = ("hr_bpm", "rr_cv", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg")
SETS = ("synthetic", "real")


def check_preprocessing(synth: EcgStore, real: EcgStore) -> dict[str, Any]:
    """Whether both stores were preprocessed the same way (header 'preprocess', fs, n_samples, leads);
    ``warning`` says what differs, or that a header does not record its preprocessing."""
    a = dict(synth.header.get("preprocess") or {})
    b = dict(real.header.get("preprocess") or {})
    for key in ("fs", "n_samples", "leads"):
        a.setdefault(key, synth.header.get(key))
        b.setdefault(key, real.header.get(key))
    diffs = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    missing = [name for name, st in (("synthetic", synth), ("real", real)) if not st.header.get("preprocess")]
    warning = None
    if missing:
        warning = (f"the {' and '.join(missing)} store's header.json records no preprocessing settings: "
                   "whether both were filtered the same way is unknown (prepare the store with 'esi data "
                   "prepare' to record them)")
    elif diffs:
        warning = ("the stores were preprocessed differently (" + "; ".join(
            f"{k}: synthetic {v[0]!r} vs real {v[1]!r}" for k, v in diffs.items()) + "): spectra, noise and "
            "amplitude gaps partly reflect the preprocessing, not the recordings; prepare both with the same "
            "'esi data prepare' options")
    if warning:
        log.warning("compare: %s", warning)
    return {"equal": not diffs and not missing, "synthetic": a, "real": b, "differences": diffs,
            "warning": warning}


def select_indices(n: int, limit: int | None) -> np.ndarray:
    """All rows, or ``limit`` rows spread evenly over the store (its first rows are often one source only)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _psd_grid(fs: float) -> np.ndarray:
    nper = int(5 * fs)
    return np.fft.rfftfreq(nper, 1.0 / fs)


def measure_store(store: EcgStore, indices: np.ndarray, *, label: str, progress: bool = False
                  ) -> dict[str, Any]:
    """Measure the given rows of a store: a DataFrame of features (NaN = failed), the failure reasons, the
    per-record PSDs on one grid, and the per-lead sample histograms."""
    import pandas as pd
    from tqdm import tqdm

    manifest = store.manifest
    padded = (manifest["padded_samples"].fillna(0).to_numpy(np.int64) if "padded_samples" in manifest
              else np.zeros(len(manifest), np.int64))
    fs = float(store.fs)
    grid = _psd_grid(fs)
    keep_f = grid <= PSD_MAX_HZ
    names = feature_names()
    rows: list[list[float]] = []
    reasons: dict[str, Counter] = {}
    psds = np.zeros((len(indices), len(LEADS), int(keep_f.sum())), np.float32)
    hist = np.zeros((len(LEADS), len(HIST_EDGES) - 1), np.int64)
    t0 = time.perf_counter()
    k = 0
    with tqdm(total=len(indices), desc=f"measuring {label}", unit="rec", disable=not progress) as bar:
        for chunk, signals in store.iter_batches(64, indices):
            for i, sig in zip(chunk, signals, strict=True):
                n = sig.shape[1] - int(padded[i])
                # zero padding is not signal: measure what was recorded (when 2 s or more are left)
                res = measure_record(sig[:, :n] if n >= 2 * fs else sig, fs)
                rows.append([res["values"].get(f, np.nan) for f in names])
                for f, why in res["failures"].items():
                    reasons.setdefault(f, Counter())[why] += 1
                psd = res["psd"] if res["freqs"].size == grid.size else np.stack(
                    [np.interp(grid, res["freqs"], p) for p in res["psd"]])
                psds[k] = psd[:, keep_f]
                hist += res["hist"]
                k += 1
                bar.update(1)
    elapsed = time.perf_counter() - t0
    log.info("compare: measured %d %s records in %.1f s (%.1f records/s)", len(indices), label, elapsed,
             len(indices) / max(elapsed, 1e-9))
    frame = pd.DataFrame(rows, columns=names)
    frame.insert(0, "record_id", manifest["record_id"].astype(str).to_numpy()[indices])
    return {"frame": frame, "reasons": reasons, "freqs": grid[keep_f], "psd": psds, "hist": hist,
            "conditions": manifest["conditions"].to_numpy()[indices], "elapsed_s": elapsed}


def _hist_quantiles(hist: np.ndarray, qs: tuple[float, ...] = (0.01, 0.25, 0.5, 0.75, 0.99)) -> list[float]:
    """Quantiles (mV) of one lead's pooled samples from its histogram (bin-centre resolution, 0.05 mV)."""
    cum = np.cumsum(hist) / max(1, hist.sum())
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    return [float(centres[min(len(centres) - 1, int(np.searchsorted(cum, q)))]) for q in qs]


def source_of(record_id: str) -> str:
    """'real_benchmark/ludb/17' -> 'ludb', 'ptbxl/1' -> 'ptbxl': the dataset a record came from."""
    parts = str(record_id).split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def by_source(frame: Any) -> dict[str, Any]:
    """Record count and medians of :data:`SOURCE_MEASURES` per source."""
    out = {}
    for src, sub in frame.groupby(frame["record_id"].map(source_of), sort=True):
        out[str(src)] = {"n": int(len(sub)), "medians": {m: float(sub[m].median()) for m in SOURCE_MEASURES}}
    return out


def _condition_block(sets: dict[str, dict[str, Any]], name: str, masks: dict[str, dict[str, np.ndarray]],
                     features: list[str], overall: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-condition summaries: both sets, the condition and NORM groups, the effect vs NORM, and the ranked
    synthetic-vs-real gaps within the condition."""
    block: dict[str, Any] = {"n": {s: int(masks[s][name].sum()) for s in SETS},
                             "n_norm": {s: int(masks[s]["NORM"].sum()) if "NORM" in masks[s] else 0
                                        for s in SETS},
                             "key_measure": KEY_MEASURE.get(name, "hr_bpm"), "measures": {}}
    for meas in CONDITION_MEASURES:
        entry: dict[str, Any] = {}
        for s in SETS:
            col = sets[s]["frame"][meas].to_numpy(np.float64)
            group = col[masks[s][name]]
            entry[s] = summarize(group, int(np.isnan(group).sum()))
            if "NORM" in masks[s] and name != "NORM":
                norm = col[masks[s]["NORM"]]
                entry[f"{s}_norm"] = summarize(norm, int(np.isnan(norm).sum()))
                entry[f"{s}_effect"] = entry[s]["median"] - entry[f"{s}_norm"]["median"]
        block["measures"][meas] = entry
    for s in SETS:
        pr = sets[s]["frame"]["pr_ms"].to_numpy(np.float64)[masks[s][name]]
        block.setdefault("p_wave_found", {})[s] = float(np.isfinite(pr).mean()) if pr.size else float("nan")
    if all(block["n"][s] >= MIN_N for s in SETS):
        sub = {s: sets[s]["frame"][masks[s][name]] for s in SETS}
        scales = {g["feature"]: g["scale"] for g in overall}
        block["gaps"] = rank_gaps(sub["synthetic"], sub["real"], features, scales)[:10]
    else:
        block["gaps"] = []
        block["note"] = f"fewer than {MIN_N} records in a set: no within-condition gap ranking"
    return block


def compare_stores(synth_path: str | Path, real_path: str | Path, out: str | Path, *, limit: int | None = None,
                   conditions: str | list[str] | None = None, ludb: str | Path | None = None,
                   ludb_limit: int | None = None, progress: bool = False, plots: bool = True) -> dict[str, Any]:
    """Compare a synthetic and a real store on the same measurements and write OUT/report.md,
    OUT/compare.json, OUT/measurements.parquet and PNG plots. Returns the compare.json content."""
    from esi.data.compare.report import write_outputs

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder for the report")
    for side in (synth_path, real_path):
        if out.resolve() == Path(side).resolve():
            raise ConfigError(f"--out {out} is the store {side}; pass another folder for the report")
    groups = parse_conditions(conditions)
    groups.setdefault("NORM", parse_conditions("NORM")["NORM"])  # every effect is measured against NORM
    stores = {"synthetic": EcgStore(synth_path), "real": EcgStore(real_path)}
    for name, st in stores.items():
        st.require_records(f"the {name} side of 'esi data compare'")
    prep = check_preprocessing(stores["synthetic"], stores["real"])
    t0 = time.perf_counter()
    sets = {name: measure_store(st, select_indices(len(st), limit), label=name, progress=progress)
            for name, st in stores.items()}
    features = feature_names()
    gaps = rank_gaps(sets["synthetic"]["frame"], sets["real"]["frame"], features)
    masks = {s: condition_masks(sets[s]["conditions"], groups) for s in SETS}
    result: dict[str, Any] = {
        "stores": {s: {"path": str(stores[s].path), "n_records": len(stores[s]),
                       "n_measured": int(len(sets[s]["frame"]))} for s in SETS},
        "limit": limit, "preprocessing": prep, "gaps": gaps, "grouped": grouped_gaps(gaps),
        "by_source": {s: by_source(sets[s]["frame"]) for s in SETS},
        "failures": {s: {f: {"n_failed": int(sum(c.values())), "reasons": dict(c.most_common())}
                         for f, c in sorted(sets[s]["reasons"].items())} for s in SETS},
        "conditions": {name: _condition_block(sets, name, masks, features, gaps) for name in groups},
        "psd": {s: {"freqs_hz": sets[s]["freqs"].round(3).tolist(),
                    "median_mv2_per_hz": {lead: np.median(sets[s]["psd"][:, i], axis=0).tolist()
                                          for i, lead in enumerate(LEADS)}} for s in SETS},
        "amplitude_quantiles_mv": {s: {lead: _hist_quantiles(sets[s]["hist"][i]) for i, lead in
                                       enumerate(LEADS)} for s in SETS},
    }
    if ludb is not None:
        from esi.data.compare.ludb import ludb_check

        result["ludb"] = ludb_check(ludb, limit=ludb_limit, progress=progress)
    result["elapsed_s"] = time.perf_counter() - t0
    n_total = sum(len(sets[s]["frame"]) for s in SETS)
    result["records_per_s"] = n_total / max(sum(sets[s]["elapsed_s"] for s in SETS), 1e-9)
    write_outputs(out, result, sets, masks, plots=plots)
    return result
