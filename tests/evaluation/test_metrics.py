"""Metrics against scikit-learn on known inputs; bootstrap CI; F1 thresholds; MMD."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from esi.errors import EvaluationError
from esi.evaluation.metrics import best_f1_thresholds, binary_auc, f1_macro, macro_auc, mmd_rbf


def _data(n: int = 300, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(int)
    s = y * rng.normal(1.0, 1.0, (n, c)) + rng.normal(0, 1.0, (n, c))
    s[:, 0] = np.round(s[:, 0], 1)  # ties, which count one half in both implementations
    return y, s


class TestAuc:
    def test_matches_sklearn(self) -> None:
        y, s = _data()
        res = macro_auc(y, s, ["a", "b", "c", "d"])
        assert res.macro == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
        for c, name in enumerate("abcd"):
            assert res.per_class[name] == pytest.approx(roc_auc_score(y[:, c], s[:, c]), abs=1e-12)

    def test_known_values(self) -> None:
        assert binary_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
        assert binary_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
        assert binary_auc(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3])) == 0.0

    def test_single_valued_class_is_skipped_and_reported(self) -> None:
        y, s = _data()
        y[:, 2] = 0
        res = macro_auc(y, s, ["a", "b", "c", "d"])
        assert res.skipped == ["c"]
        assert "c" not in res.per_class
        expected = np.mean([roc_auc_score(y[:, k], s[:, k]) for k in (0, 1, 3)])
        assert res.macro == pytest.approx(expected)

    def test_no_valid_class_is_an_error(self) -> None:
        with pytest.raises(EvaluationError, match="no class has both"):
            macro_auc(np.zeros((5, 2)), np.random.default_rng(0).random((5, 2)))

    def test_shape_mismatch_is_an_error(self) -> None:
        with pytest.raises(EvaluationError, match="shape"):
            macro_auc(np.zeros((5, 2)), np.zeros((5, 3)))

    def test_bootstrap_ci_contains_point_estimate_and_is_reproducible(self) -> None:
        y, s = _data()
        a = macro_auc(y, s, n_bootstrap=200, seed=3)
        b = macro_auc(y, s, n_bootstrap=200, seed=3)
        assert a.ci_low < a.macro < a.ci_high
        assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
        assert a.n_bootstrap == 200
        assert a.ci_high - a.ci_low < 0.2


class TestF1:
    def test_matches_sklearn_with_given_thresholds(self) -> None:
        y, s = _data()
        th = np.array([0.0, 0.5, 1.0, -0.5])
        assert f1_macro(y, s, th) == pytest.approx(f1_score(y, (s >= th).astype(int), average="macro"))
        assert f1_macro(y, s, 0.3) == pytest.approx(f1_score(y, (s >= 0.3).astype(int), average="macro"))

    def test_best_thresholds_are_optimal_on_their_data(self) -> None:
        y, s = _data(n=120)
        th = best_f1_thresholds(y, s)
        for c in range(y.shape[1]):
            best = f1_score(y[:, c], (s[:, c] >= th[c]).astype(int))
            brute = max(f1_score(y[:, c], (s[:, c] >= t).astype(int)) for t in np.unique(s[:, c]))
            assert best == pytest.approx(brute)

    def test_class_without_positives_predicts_nothing(self) -> None:
        y, s = _data(n=50)
        y[:, 1] = 0
        assert np.isinf(best_f1_thresholds(y, s)[1])


class TestMmd:
    def test_zero_for_identical_sets(self) -> None:
        x = np.random.default_rng(0).normal(size=(100, 8))
        assert mmd_rbf(x, x.copy())["mmd2"] == pytest.approx(0.0, abs=1e-12)

    def test_grows_with_shift(self) -> None:
        rng = np.random.default_rng(1)
        x = rng.normal(size=(200, 8))
        same = mmd_rbf(x, rng.normal(size=(200, 8)))["mmd2"]
        small = mmd_rbf(x, rng.normal(size=(200, 8)) + 0.5)["mmd2"]
        large = mmd_rbf(x, rng.normal(size=(200, 8)) + 2.0)["mmd2"]
        assert same < small < large
        assert same < 0.02

    def test_bad_shapes(self) -> None:
        with pytest.raises(EvaluationError, match="same width"):
            mmd_rbf(np.zeros((3, 2)), np.zeros((3, 4)))


class TestBootstrapRedraw:
    def test_resamples_that_lose_a_class_are_redrawn(self) -> None:
        rng = np.random.default_rng(0)
        y = np.zeros((40, 2), int)
        y[:20, 0] = 1
        y[0, 1] = y[1, 1] = 1  # a rare class: about 13% of resamples of 40 lose both positives
        s = rng.normal(size=(40, 2))
        s[:2, 1] += 5.0  # ...and it is perfectly ranked (AUC 1); class 0 is noise (AUC 0.31 here)
        res = macro_auc(y, s, n_bootstrap=300, seed=0)
        assert res.n_bootstrap == 300 and res.redrawn > 0
        # Every kept resample averages both classes: (AUC_0 + 1) / 2 >= 0.5. Keeping the resamples that lost
        # class 1 would average class 0 alone (~0.31) in 13% of them and pull the lower bound below 0.5.
        assert res.ci_low >= 0.5

    def test_zero_resamples_means_no_interval(self) -> None:
        y, s = _data()
        res = macro_auc(y, s, n_bootstrap=0)
        assert res.ci_low is None and res.n_bootstrap == 0 and res.to_dict()["ci95"] == [None, None]
