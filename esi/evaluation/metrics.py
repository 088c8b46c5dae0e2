"""Metrics of the benchmark suite: macro AUC (with bootstrap CI), per-class AUC, F1 with thresholds, MMD.

Every function takes plain numpy arrays: ``y`` is an (n, C) 0/1 matrix, ``scores`` an (n, C) float matrix.
Classes whose test labels hold a single value have no AUC; they are skipped and reported, never silently
averaged in as 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from esi.errors import EvaluationError


def _check(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if scores.ndim == 1:
        scores = scores[:, None]
    if y.shape != scores.shape:
        raise EvaluationError(
            f"labels have shape {y.shape} but scores {scores.shape}; pass one score column "
            "per class and one row per record"
        )
    if not np.isfinite(scores).all():
        raise EvaluationError("scores contain NaN or infinite values; check the model's outputs")
    return (y > 0.5).astype(np.int8), scores


def binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC of one class by the rank statistic (ties count one half); NaN when y has a single value."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)  # average ranks: ties contribute 1/2, as in scikit-learn's roc_auc_score
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class AucResult:
    """Macro AUC over the classes that have both label values, the per-class AUCs and the skipped classes."""

    macro: float
    per_class: dict[str, float]
    skipped: list[str] = field(default_factory=list)
    ci_low: float | None = None
    ci_high: float | None = None
    n_bootstrap: int = 0
    redrawn: int = 0  # resamples drawn again because a class lost all positives or all negatives

    def to_dict(self) -> dict:
        return {
            "macro_auc": self.macro,
            "ci95": [self.ci_low, self.ci_high],
            "n_bootstrap": self.n_bootstrap,
            "bootstrap_redrawn": self.redrawn,
            "per_class_auc": self.per_class,
            "skipped_classes": self.skipped,
        }


def per_class_auc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each column (NaN where the column's labels hold a single value)."""
    y, scores = _check(y, scores)
    return np.array([binary_auc(y[:, c], scores[:, c]) for c in range(y.shape[1])])


def macro_auc(
    y: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> AucResult:
    """Macro AUC (mean over classes with positives and negatives), per-class AUC and a bootstrap 95% CI.

    The bootstrap resamples records with replacement (``n_bootstrap`` times, fixed ``seed``). A resample in
    which a scored class lost all its positives (or negatives) is drawn again, as the PTB-XL benchmark code
    does, so every resample averages the same classes. ``n_bootstrap=0``: no interval (``ci95`` is None).
    """
    y, scores = _check(y, scores)
    names = list(class_names) if class_names is not None else [str(c) for c in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise EvaluationError(f"{len(names)} class names for {y.shape[1]} label columns")
    aucs = per_class_auc(y, scores)
    valid = ~np.isnan(aucs)
    if not valid.any():
        raise EvaluationError(
            "no class has both positive and negative records in the evaluation set, so no "
            "AUC exists; use a larger test split or another task"
        )
    result = AucResult(
        macro=float(aucs[valid].mean()),
        per_class={n: float(a) for n, a, v in zip(names, aucs, valid, strict=True) if v},
        skipped=[n for n, v in zip(names, valid, strict=True) if not v],
    )
    if n_bootstrap > 0:
        stats, redrawn = _bootstrap(y, scores, np.flatnonzero(valid), n_bootstrap, seed)
        result.ci_low, result.ci_high = (float(v) for v in np.percentile(stats, [2.5, 97.5]))
        result.n_bootstrap = len(stats)
        result.redrawn = redrawn
    return result


MAX_REDRAWS_PER_RESAMPLE = 100


def _rank_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUC of each row of (B, n) label/score matrices (rank statistic, ties one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(s, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    return ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc_matrix(y: np.ndarray, scores: np.ndarray, cols: np.ndarray, n_bootstrap: int, seed: int
                         ) -> tuple[np.ndarray, int]:
    """AUC of each class in ``cols`` on ``n_bootstrap`` resamples of the records: a (n_bootstrap, len(cols))
    matrix, and how many resamples were drawn again because a class lost all its positives or negatives.

    Resamples are drawn in blocks and scored vectorised (one rank per resample and class)."""
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    yc, sc = y[:, cols].astype(bool), scores[:, cols].astype(np.float64)
    kept: list[np.ndarray] = []
    have, redrawn = 0, 0
    limit = MAX_REDRAWS_PER_RESAMPLE * n_bootstrap
    while have < n_bootstrap:
        idx = rng.integers(0, n, (max(64, n_bootstrap - have), n))
        pos = yc[idx].sum(axis=1)  # (block, classes)
        ok = ~((pos == 0) | (pos == n)).any(axis=1)
        redrawn += int((~ok).sum())
        if redrawn > limit:
            raise EvaluationError(
                f"bootstrap: {redrawn} resamples lost every positive of a class (only {have} of "
                f"{n_bootstrap} kept); the test split has too few positives for a CI: use --bootstrap 0"
            )
        idx = idx[ok][: n_bootstrap - have]
        block = np.stack([_rank_auc(yc[idx, j], sc[idx, j]) for j in range(len(cols))], axis=1)
        kept.append(block)
        have += len(idx)
    return np.concatenate(kept), redrawn


def _bootstrap(y: np.ndarray, scores: np.ndarray, cols: np.ndarray, n_bootstrap: int, seed: int
               ) -> tuple[list[float], int]:
    """Macro AUC over ``cols`` of ``n_bootstrap`` resamples in which every class keeps both label values."""
    matrix, redrawn = bootstrap_auc_matrix(y, scores, cols, n_bootstrap, seed)
    return [float(v) for v in matrix.mean(axis=1)], redrawn


def best_f1_thresholds(y_val: np.ndarray, scores_val: np.ndarray) -> np.ndarray:
    """Per-class thresholds that maximise F1 on the given (validation) data.

    Candidates are midpoints between consecutive distinct scores; a class without positives gets a
    threshold above every score (it predicts nothing), the safe choice when nothing can be learned.
    """
    y, s = _check(y_val, scores_val)
    thresholds = np.empty(y.shape[1])
    for c in range(y.shape[1]):
        col, lab = s[:, c], y[:, c].astype(bool)
        if not lab.any():
            thresholds[c] = np.inf
            continue
        order = np.argsort(-col, kind="stable")
        sc, lb = col[order], lab[order]
        tp = np.cumsum(lb)
        # Only cut where the score changes, so tied records are all in or all out.
        cut = np.flatnonzero(np.r_[sc[1:] != sc[:-1], True])
        n_pred = cut + 1
        f1 = 2 * tp[cut] / (n_pred + lab.sum())
        k = int(np.argmax(f1))
        lo = sc[cut[k]]
        hi = sc[cut[k] + 1] if cut[k] + 1 < sc.size else lo - 1.0
        thresholds[c] = (lo + hi) / 2
    return thresholds


def f1_macro(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float) -> float:
    """F1-macro of ``scores >= thresholds`` (thresholds per class or one for all); 0 for empty classes."""
    from sklearn.metrics import f1_score

    y, s = _check(y, scores)
    pred = (s >= np.asarray(thresholds, dtype=np.float64)).astype(np.int8)  # broadcasts per class
    return float(f1_score(y, pred, average="macro", zero_division=0))


def mmd_rbf(
    x: np.ndarray, y: np.ndarray, *, bandwidth: float | None = None, max_points: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Squared maximum mean discrepancy between two embedding sets with an RBF kernel.

    The bandwidth defaults to the median heuristic (median pairwise distance of the pooled set). The biased
    (V-statistic) estimate is used, so identical sets give exactly 0. Sets larger than ``max_points`` are
    subsampled with a fixed seed (the kernel matrix is quadratic in size).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise EvaluationError(
            f"MMD needs two non-empty (n, d) sets of the same width, got {x.shape} and {y.shape}"
        )
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    if len(y) > max_points:
        y = y[rng.choice(len(y), max_points, replace=False)]
    z = np.concatenate([x, y])
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    if bandwidth is None:
        off = d2[np.triu_indices(len(z), k=1)]
        med = float(np.median(np.sqrt(off))) if off.size else 1.0
        bandwidth = med if med > 0 else 1.0
    k = np.exp(-d2 / (2 * bandwidth**2))
    n = len(x)
    kxx, kyy, kxy = k[:n, :n].mean(), k[n:, n:].mean(), k[:n, n:].mean()
    mmd2 = max(float(kxx + kyy - 2 * kxy), 0.0)
    return {"mmd2": mmd2, "mmd": float(np.sqrt(mmd2)), "bandwidth": float(bandwidth)}
