"""Drift statistics: no drift on the reference distribution, clear drift on a shifted one."""

from __future__ import annotations

import numpy as np

from esi.serving.drift import Reservoir, drift_report, far_share, mmd_permutation


def _cloud(n: int, centre: np.ndarray, seed: int) -> np.ndarray:
    return centre + 0.1 * np.random.default_rng(seed).standard_normal((n, centre.size))


CENTRE = np.eye(16)[0]
OTHER = np.eye(16)[1]


def test_same_distribution_is_not_flagged() -> None:
    mmd = mmd_permutation(_cloud(300, CENTRE, 1), _cloud(300, CENTRE, 2), permutations=100)
    assert mmd["p_value"] > 0.05 and mmd["mmd2"] < 0.01


def test_shifted_distribution_is_flagged() -> None:
    ref = _cloud(300, CENTRE, 1)
    mmd = mmd_permutation(_cloud(300, OTHER, 2), ref, permutations=100)
    assert mmd["p_value"] < 0.02 and mmd["mmd2"] > 0.1
    assert far_share(_cloud(200, OTHER, 3), ref)["far_share"] > 0.9
    assert far_share(_cloud(200, CENTRE, 3), ref)["far_share"] < 0.1


def test_report_without_reference_says_so() -> None:
    rep = drift_report(_cloud(10, CENTRE, 0), None)
    assert rep["available"] is False and "no reference" in rep["reason"]
    assert drift_report(_cloud(10, CENTRE, 0), _cloud(10, CENTRE, 1)[:, :8])["available"] is False
    full = drift_report(_cloud(50, OTHER, 0), _cloud(50, CENTRE, 1), permutations=50)
    assert full["available"] and full["p_value"] < 0.05 and full["far_share"] > 0.9


def test_reservoir_keeps_a_bounded_uniform_sample() -> None:
    res = Reservoir(100, seed=0)
    for start in range(0, 10_000, 500):
        res.add(np.arange(start, start + 500, dtype=float)[:, None])
    sample = res.array()[:, 0]
    assert len(sample) == 100 and res.seen == 10_000
    assert 3000 < sample.mean() < 7000  # not just the first or the last rows
