"""Linear probe on frozen features: one-vs-rest logistic regression at 1%, 10% and 100% of the training folds.

Features are standardised on the training subset. The regularisation strength C is chosen on the validation
fold (macro AUC); the test fold is scored once with the chosen model. Label-fraction subsets are drawn by
iterative stratification with fixed seeds (so rare classes keep positives where the data allow); a class
with a single label value in a subset cannot be fitted and predicts its training prevalence (a constant,
AUC 0.5), which is reported.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from esi.errors import EvaluationError
from esi.evaluation.benchmarks import iterative_stratification
from esi.evaluation.metrics import best_f1_thresholds, f1_macro, macro_auc

log = logging.getLogger(__name__)

FRACTIONS = (0.01, 0.1, 1.0)
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def fraction_subset(
    y: np.ndarray, fraction: float, *, seed: int = 0, groups: Sequence | None = None
) -> np.ndarray:
    """Sorted positions of a ``fraction`` of the rows, stratified over the labels (deterministic per seed)."""
    n = len(y)
    if not 0 < fraction <= 1:
        raise EvaluationError(f"label fraction {fraction} must be in (0, 1]")
    if fraction >= 1 or n == 0:
        return np.arange(n)
    fold = iterative_stratification(y, 2, seed=seed, groups=groups, proportions=[fraction, 1 - fraction])
    chosen = np.flatnonzero(fold == 0)
    if len(chosen) == 0:  # tiny sets: keep at least one record
        chosen = np.array([int(np.random.default_rng(seed).integers(n))])
    return np.sort(chosen)


@dataclass
class LinearProbe:
    """A fitted one-vs-rest probe: scaler statistics, per-class weights, constants for unfittable classes."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)
    constant: dict[int, float] = field(default_factory=dict)  # class -> constant probability
    C: float = 1.0

    def decision(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        for c, p in self.constant.items():
            probs[:, c] = p
        return probs


def fit_probe(
    x: np.ndarray, y: np.ndarray, *, C: float = 1.0, max_iter: int = 300, seed: int = 0
) -> LinearProbe:
    """Fit one logistic regression per class on standardised features."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    z = (x - mean) / scale
    n_classes = y.shape[1]
    coef, intercept = np.zeros((n_classes, x.shape[1])), np.zeros(n_classes)
    constant: dict[int, float] = {}
    for c in range(n_classes):
        col = y[:, c] > 0.5
        if col.all() or not col.any():
            constant[c] = float(col.mean())
            continue
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(z, col.astype(int))
        coef[c], intercept[c] = clf.coef_[0], clf.intercept_[0]
    return LinearProbe(mean=mean, scale=scale, coef=coef, intercept=intercept, constant=constant, C=C)


def select_and_fit(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    c_grid: Sequence[float] = C_GRID,
    seed: int = 0,
) -> tuple[LinearProbe, dict[float, float]]:
    """Fit a probe for each C, keep the one with the best validation macro AUC (ties: the smaller C)."""
    val_auc: dict[float, float] = {}
    best: LinearProbe | None = None
    from threadpoolctl import threadpool_limits

    for C in c_grid:
        with threadpool_limits(1):  # many tiny fits: BLAS threads only add contention
            probe = fit_probe(x_tr, y_tr, C=C, seed=seed)
        try:
            auc = macro_auc(y_val, probe.decision(x_val)).macro
        except EvaluationError:
            auc = float("nan")  # a validation split without both label values: cannot select, keep the first
        val_auc[float(C)] = auc
        if best is None or (np.isfinite(auc) and (not np.isfinite(val_auc[best.C]) or auc > val_auc[best.C])):
            best = probe
    assert best is not None
    return best, val_auc


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: list[str],
    *,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    c_grid: Sequence[float] = C_GRID,
    n_bootstrap: int = 1000,
    groups: Sequence | None = None,
) -> dict:
    """Linear-probe results per label fraction: test macro AUC (mean over seeds for fractions < 1), CI, F1."""
    out: dict = {"fractions": {}}
    for frac in fractions:
        runs = []
        for seed in seeds if frac < 1 else seeds[:1]:
            sub = fraction_subset(y_train, frac, seed=seed, groups=groups)
            probe, val_auc = select_and_fit(
                x_train[sub], y_train[sub], x_val, y_val, c_grid=c_grid, seed=seed
            )
            s_val, s_test = probe.decision(x_val), probe.decision(x_test)
            auc = macro_auc(y_test, s_test, class_names, n_bootstrap=n_bootstrap, seed=seed)
            thresholds = best_f1_thresholds(y_val, s_val)
            runs.append(
                {
                    "seed": seed,
                    "n_train": int(len(sub)),
                    "C": probe.C,
                    "val_auc_by_C": val_auc,
                    "unfitted_classes": [class_names[c] for c in sorted(probe.constant)],
                    "f1_macro": f1_macro(y_test, s_test, thresholds),
                    **auc.to_dict(),
                    "_scores_test": s_test,
                }
            )
            log.info(
                "linear probe %g%% seed %d: n=%d C=%g test macro AUC %.3f",
                frac * 100,
                seed,
                len(sub),
                probe.C,
                auc.macro,
            )
        aucs = np.array([r["macro_auc"] for r in runs])
        key = f"{frac:g}"
        out["fractions"][key] = {
            "fraction": frac,
            "macro_auc": float(aucs.mean()),
            "macro_auc_std": float(aucs.std()),
            # several seeds: the envelope of the per-seed bootstrap intervals, so it always covers the mean
            "ci95": [float(min(r["ci95"][0] for r in runs)), float(max(r["ci95"][1] for r in runs))]
            if all(r["ci95"][0] is not None for r in runs) else [None, None],
            "n_train": int(np.mean([r["n_train"] for r in runs])),
            "unfitted_classes": sorted({c for r in runs for c in r["unfitted_classes"]}),
            "f1_macro": float(np.mean([r["f1_macro"] for r in runs])),
            "per_class_auc": runs[0]["per_class_auc"],
            "skipped_classes": runs[0]["skipped_classes"],
            "runs": runs,
        }
    return out
