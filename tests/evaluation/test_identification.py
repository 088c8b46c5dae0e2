"""1-shot identification: metrics on perfect and random embeddings; gallery/probe pairing."""

from __future__ import annotations

import numpy as np
import pytest

from esi.errors import EvaluationError
from esi.evaluation.identification import identification_metrics, make_pairs


def test_perfect_embedding_identifies_everyone() -> None:
    g = np.random.default_rng(0).normal(size=(50, 16))
    res = identification_metrics(g, g + 1e-3 * np.random.default_rng(1).normal(size=g.shape))
    assert res["top1_accuracy"] == 1.0
    assert res["macro_auc"] == 1.0
    assert res["mean_rank"] == 1.0


def test_random_embedding_is_near_chance() -> None:
    rng = np.random.default_rng(0)
    accs, aucs = [], []
    for _ in range(20):
        res = identification_metrics(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)))
        accs.append(res["top1_accuracy"])
        aucs.append(res["macro_auc"])
    assert res["chance_accuracy"] == pytest.approx(0.01)
    assert np.mean(accs) < 0.05
    assert abs(np.mean(aucs) - 0.5) < 0.03


def test_constant_embedding_is_not_rewarded() -> None:
    res = identification_metrics(np.ones((10, 4)), np.ones((10, 4)))
    assert res["top1_accuracy"] == 0.0 and res["macro_auc"] == 0.5


def test_needs_two_subjects() -> None:
    with pytest.raises(EvaluationError, match="at least 2"):
        identification_metrics(np.ones((1, 4)), np.ones((1, 4)))


def test_record_pairing_uses_two_recordings_per_subject() -> None:
    idx = np.arange(100, 110)
    subjects = np.array(["a", "a", "b", "c", "c", "c", "d", "d", "e", "f"])
    rec_ids = np.array([f"r{i}" for i in range(10)])
    p = make_pairs(idx, subjects, rec_ids, np.full(10, 10.0), 5.0, mode="records")
    assert list(p.subjects) == ["a", "c", "d"]
    assert list(p.gallery_idx) == [100, 103, 106] and list(p.probe_idx) == [101, 104, 107]
    assert (p.gallery_idx != p.probe_idx).all()


def test_segment_pairing_skips_short_records() -> None:
    idx = np.arange(4)
    p = make_pairs(
        idx,
        np.array(["a", "b", "c", "d"]),
        np.array(["w", "x", "y", "z"]),
        np.array([10.0, 6.0, 8.0, 12.0]),
        4.0,
        mode="segments",
    )
    assert list(p.gallery_idx) == [0, 2, 3] and p.skipped == 1
    assert (p.probe_start == 4.0).all() and (p.gallery_start == 0.0).all()


def test_auto_pairing() -> None:
    subj = np.repeat(np.arange(12).astype(str), 2)
    p = make_pairs(np.arange(24), subj, subj, np.full(24, 10.0), 5.0, mode="auto", min_subjects=10)
    assert p.mode == "records"
    p = make_pairs(np.arange(24), np.arange(24).astype(str), subj, np.full(24, 10.0), 5.0, mode="auto")
    assert p.mode == "segments"
