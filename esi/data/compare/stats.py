"""Summaries and distances of two sets of per-record measurements, the ranked gap table, and condition groups."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.data.compare.features import feature_group, feature_unit
from esi.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

MIN_N = 3  # fewer measured records than this in either set: no distance
PRESENT = 0.5  # a condition counts when its certainty in the store's 'conditions' column is at least this
NORMAL_IDS = ("164854000", "426783006")  # normal ECG, sinus rhythm
CONDITIONS: dict[str, tuple[str, ...]] = {
    "AF": ("164889003",), "AFL": ("164890007",), "RBBB": ("59118001",), "LBBB": ("164909002",),
    "1AVB": ("270492004",), "NORM": NORMAL_IDS,
}
# The measurement each condition is known to move, and the direction a cardiologist expects vs normal.
KEY_MEASURE = {"AF": "rr_cv", "AFL": "hr_bpm", "RBBB": "qrs_ms", "LBBB": "qrs_ms", "1AVB": "pr_ms",
               "NORM": "hr_bpm"}


def summarize(values: np.ndarray, n_failed: int = 0) -> dict[str, Any]:
    """n measured, n failed, median, first and third quartile (NaN when nothing was measured)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "n_failed": int(n_failed), "median": float("nan"), "q1": float("nan"),
                "q3": float("nan")}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "n_failed": int(n_failed), "median": float(med), "q1": float(q1), "q3": float(q3)}


def _scale(real: np.ndarray, pooled: np.ndarray) -> float:
    """The unit a gap is measured in: the real set's IQR, else its std, else the pooled IQR (0 if constant)."""
    for values in (real, pooled):
        q1, q3 = np.percentile(values, [25, 75])
        if q3 - q1 > 1e-12:
            return float(q3 - q1)
        if values is real and values.std() > 1e-12:
            return float(values.std())
    return 0.0


def gap(synth: np.ndarray, real: np.ndarray, scale: float | None = None) -> dict[str, float]:
    """Distance between the synthetic and real distributions of one measurement.

    ``w_norm`` (Wasserstein-1 distance in units of the real IQR) is what the table ranks by: it is 1 when the
    synthetic distribution sits one real IQR away on average; ``ks`` (two-sample Kolmogorov-Smirnov
    statistic, 0..1) says how separable the two are irrespective of scale. ``scale`` overrides the unit (the
    per-condition tables use the whole real set's IQR: a handful of real records has no stable IQR).
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    s = np.asarray(synth, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    s, r = s[np.isfinite(s)], r[np.isfinite(r)]
    if s.size < MIN_N or r.size < MIN_N:
        return {"w": float("nan"), "w_norm": float("nan"), "ks": float("nan"), "ks_p": float("nan"),
                "scale": float("nan")}
    w = float(wasserstein_distance(s, r))
    if scale is None or not np.isfinite(scale):
        scale = _scale(r, np.concatenate([s, r]))
    w_norm = w / scale if scale > 0 else (0.0 if w == 0 else float("inf"))
    with warnings.catch_warnings():  # ties make the exact p-value fail over to the asymptotic one: fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        ks = ks_2samp(s, r)
    return {"w": w, "w_norm": float(w_norm), "ks": float(ks.statistic), "ks_p": float(ks.pvalue),
            "scale": scale}


def _order(row: dict[str, Any]) -> tuple[int, float, str]:
    ranked = not np.isnan(row["w_norm"])  # inf (a constant real set) ranks first, NaN (too few) last
    return (0 if ranked else 1, -row["w_norm"] if ranked else 0.0, row["feature"])


def rank_gaps(synth: pd.DataFrame, real: pd.DataFrame, features: Sequence[str],
              scales: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per feature: both sets' summaries, the distance, sorted largest gap first (features with too
    few measurements in a set go last, with NaN distances, so they stay visible)."""
    rows = []
    for name in features:
        s, r = synth[name].to_numpy(np.float64), real[name].to_numpy(np.float64)
        row = {"feature": name, "group": feature_group(name), "unit": feature_unit(name),
               "synthetic": summarize(s, int(np.isnan(s).sum())), "real": summarize(r, int(np.isnan(r).sum())),
               **gap(s, r, (scales or {}).get(name))}
        row["median_diff"] = row["synthetic"]["median"] - row["real"]["median"]
        rows.append(row)
    rows.sort(key=_order)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def grouped_gaps(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-lead features pooled by kind: the median gap over the 12 leads and the worst lead, sorted."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        kinds.setdefault(row["feature"].split("[", 1)[0], []).append(row)
    out = []
    for kind, items in kinds.items():
        finite = [r for r in items if np.isfinite(r["w_norm"])]
        if not finite:
            continue
        worst = max(finite, key=lambda r: r["w_norm"])
        out.append({"measure": kind, "group": items[0]["group"], "n_features": len(items),
                    "median_w_norm": float(np.median([r["w_norm"] for r in finite])),
                    "worst": worst["feature"], "worst_w_norm": worst["w_norm"]})
    return sorted(out, key=lambda r: -r["median_w_norm"])


def parse_conditions(text: str | Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """'AF,RBBB,NORM' (names of :data:`CONDITIONS` or raw condition ids) -> {name: condition ids}."""
    if text is None:
        items: list[str] = ["AF", "RBBB", "LBBB", "1AVB", "NORM"]
    elif isinstance(text, str):
        items = [t.strip() for t in text.split(",") if t.strip()]
    else:
        items = list(text)
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        key = item.upper()
        if key in CONDITIONS:
            out[key] = CONDITIONS[key]
        elif item[:1].isdigit() or item.startswith("esi:"):
            out[item] = (item,)
        else:
            raise ConfigError(f"--conditions: unknown condition {item!r}; use {', '.join(CONDITIONS)} or "
                              "condition ids (SNOMED CT codes such as 164889003)")
    if not out:
        raise ConfigError("--conditions: no condition given; e.g. --conditions AF,RBBB,LBBB,1AVB,NORM")
    return out


def _present(cell: Any) -> set[str]:
    try:
        conds = json.loads(cell) if isinstance(cell, str) else dict(cell or {})
    except (ValueError, TypeError):
        return set()
    return {k for k, v in conds.items() if isinstance(v, (int, float)) and v >= PRESENT}


def condition_masks(conditions_column: Iterable[Any], groups: dict[str, tuple[str, ...]]
                    ) -> dict[str, np.ndarray]:
    """Boolean mask per condition group. A named condition matches records carrying any of its ids; NORM
    matches records whose conditions are all normal ECG / sinus rhythm (and at least one of them), so a
    sinus-rhythm record with an infarct is not a normal reference."""
    held = [_present(c) for c in conditions_column]
    masks = {}
    for name, ids in groups.items():
        if ids == NORMAL_IDS:
            masks[name] = np.array([bool(h) and h <= set(NORMAL_IDS) for h in held], dtype=bool)
        else:
            masks[name] = np.array([bool(h & set(ids)) for h in held], dtype=bool)
    return masks
