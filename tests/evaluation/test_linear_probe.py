"""Linear probe: deterministic stratified label fractions, C chosen on validation, unfittable classes."""

from __future__ import annotations

import numpy as np
import pytest

from esi.evaluation.linear_probe import fit_probe, fraction_subset, linear_probe, select_and_fit


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.05, 0.3, 0.5]).astype(int)
    x = rng.normal(size=(n, 10))
    x[:, :3] += 2.0 * y
    return x, y


def test_fractions_are_deterministic_stratified_and_sized() -> None:
    _, y = _data(2000, 0)
    a = fraction_subset(y, 0.01, seed=0)
    assert np.array_equal(a, fraction_subset(y, 0.01, seed=0))
    assert not np.array_equal(a, fraction_subset(y, 0.01, seed=1))
    assert abs(len(a) - 20) <= 2
    assert (y[a].sum(0) > 0).all()  # even the 5% class keeps positives in a 1% subset
    assert len(fraction_subset(y, 0.1, seed=0)) == pytest.approx(200, abs=3)
    assert np.array_equal(fraction_subset(y, 1.0), np.arange(2000))


def test_probe_learns_separable_features() -> None:
    x, y = _data(600, 1)
    xv, yv = _data(200, 2)
    probe, val_auc = select_and_fit(x, y, xv, yv, c_grid=(0.01, 1.0))
    assert set(val_auc) == {0.01, 1.0} and probe.C in val_auc
    assert max(val_auc.values()) > 0.85


def test_class_absent_from_subset_predicts_a_constant() -> None:
    x, y = _data(100, 3)
    y[:, 0] = 0
    probe = fit_probe(x, y)
    assert 0 in probe.constant and probe.constant[0] == 0.0
    s = probe.decision(x)
    assert np.all(s[:, 0] == 0.0) and s[:, 1].std() > 0


def test_linear_probe_results_per_fraction() -> None:
    x, y = _data(1000, 4)
    xv, yv = _data(200, 5)
    xt, yt = _data(300, 6)
    res = linear_probe(
        x,
        y,
        xv,
        yv,
        xt,
        yt,
        ["a", "b", "c"],
        fractions=(0.1, 1.0),
        seeds=(0, 1),
        c_grid=(0.1,),
        n_bootstrap=20,
    )
    again = linear_probe(
        x,
        y,
        xv,
        yv,
        xt,
        yt,
        ["a", "b", "c"],
        fractions=(0.1, 1.0),
        seeds=(0, 1),
        c_grid=(0.1,),
        n_bootstrap=20,
    )
    assert set(res["fractions"]) == {"0.1", "1"}
    assert len(res["fractions"]["0.1"]["runs"]) == 2 and len(res["fractions"]["1"]["runs"]) == 1
    assert res["fractions"]["1"]["macro_auc"] > 0.85
    assert res["fractions"]["0.1"]["macro_auc"] == again["fractions"]["0.1"]["macro_auc"]


def test_chosen_C_is_the_argmax_of_validation_auc() -> None:
    """Few records, many noise features: the weakly regularised first C overfits, so 'take the first C' fails."""
    rng = np.random.default_rng(7)

    def data(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random((n, 2)) < 0.4).astype(int)
        x = rng.normal(size=(n, 60))
        x[:, :2] += 0.8 * y
        return x, y

    x, y = data(40)
    xv, yv = data(300)
    grid = (100.0, 0.01, 0.1, 1.0)
    probe, val_auc = select_and_fit(x, y, xv, yv, c_grid=grid)
    assert list(val_auc) == list(grid) and len(set(val_auc.values())) > 1
    assert val_auc[100.0] < max(val_auc.values())  # the premise: the first C is not the best
    assert probe.C == max(val_auc, key=val_auc.get)
