"""The Engine: the same computation as the model on training-preprocessed windows; zero-shot ranking."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from serving_helpers import ecg_batch

from esi.data.preprocess import PreprocessConfig
from esi.errors import EsiError, RequestError
from esi.serving.engine import model_preprocess_config
from esi.serving.inputs import preprocess_batch
from esi.serving.labels import resolve_labels


def test_embed_equals_the_model_on_preprocessed_windows(engine) -> None:
    x = ecg_batch(3, 2500, seed=4)
    got = engine.embed(x, fs=250)
    windows = preprocess_batch(x.astype(np.float64), 250.0, engine.preprocess)
    with torch.no_grad():
        want = engine.model.encode_ecg(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert engine.info["version"].startswith("ckpt-") and engine.info["digest"]


def test_zero_shot_ranks_by_score(engine) -> None:
    labels = resolve_labels(["AF", "RBBB", "sinus rhythm"], ["wide QRS complexes"])
    emb = engine.embed(ecg_batch(2), fs=500)
    results = engine.zero_shot(emb, labels, top_k=10)
    scores = engine.scores(emb, labels)
    for row, res in zip(scores, results, strict=True):
        assert [t["id"] for t in res["top"]][0] == labels.ids[int(np.argmax(row))]
        assert len(res["top"]) == 4  # capped at the number of labels
        assert [t["score"] for t in res["top"]] == sorted((t["score"] for t in res["top"]), reverse=True)
        assert res["scores"] == pytest.approx(dict(zip(labels.ids, row.tolist(), strict=True)))


def test_label_embeddings_are_cached_and_normalised(engine) -> None:
    labels = resolve_labels(["AF", "RBBB"])
    first = engine.label_embeddings(labels)
    assert engine.label_embeddings(labels) is first
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(first[0], first[1])


def test_windows_of_another_shape_are_refused(engine) -> None:
    with pytest.raises(RequestError, match=r"field 'windows' has shape \(2, 12, 4000\); expected \(n, 12, 5000\)"):
        engine.embed_windows(np.zeros((2, 12, 4000), np.float32))
    with pytest.raises(RequestError, match="non-finite"):
        engine.embed_windows(np.full((1, 12, 5000), np.nan, np.float32))


def test_caption_and_text(engine) -> None:
    captions = engine.caption(preprocess_batch(ecg_batch(2).astype(np.float64), 500.0, engine.preprocess),
                              max_new_tokens=8)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    z = engine.embed_text(["atrial fibrillation", "normal ECG"])
    assert z.shape == (2, engine.model.config.embed_dim)


def test_preprocessing_comes_from_the_training_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    cfg = PreprocessConfig(fs=250, duration_s=8.0, highpass_hz=None)
    (store / "header.json").write_text(json.dumps({"preprocess": cfg.to_dict()}))
    model = SimpleNamespace(checkpoint_extra={"pretrain": {"config": {"store": str(store)}}}, registry_info={},
                            config=SimpleNamespace(ecg_cfg=SimpleNamespace(fs=500, seq_len=5000)))
    assert model_preprocess_config(model) == cfg
    model.checkpoint_extra = {}
    assert model_preprocess_config(model) == PreprocessConfig(fs=500, duration_s=10.0)
    model.registry_info = {"preprocess": {**cfg.to_dict(), "unknown_key": 1}}
    assert model_preprocess_config(model) == cfg


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    from esi.serving.engine import load_model_uri

    with pytest.raises(EsiError, match="does not exist"):
        load_model_uri(str(tmp_path / "nope.pt"))


def test_label_cache_stays_bounded_under_free_text_prompts(tiny_checkpoint: Path) -> None:
    """Every request may bring its own prompts: the cache keeps the most recent label sets only."""
    from esi.serving.engine import Engine

    engine = Engine.from_uri(str(tiny_checkpoint), label_cache_size=3)
    sets = [resolve_labels(None, [f"free text prompt {i}"]) for i in range(10)]
    for labels in sets:
        engine.label_embeddings(labels)
    info = engine.label_cache_info()
    assert info["entries"] == info["max_entries"] == 3
    assert info["bytes"] == 3 * engine.model.config.embed_dim * 4  # one (1, D) float32 row per set
    latest = engine.label_embeddings(sets[-1])
    assert engine.label_embeddings(sets[-1]) is latest  # still cached
    engine.label_embeddings(sets[0])  # evicted long ago: recomputed, and the least recent goes
    assert engine.label_cache_info()["entries"] == 3
    emb = engine.embed(ecg_batch(1), 500)
    latest = engine.label_embeddings(engine.scoring_labels(sets[-1]))  # the prompt's row, then the reference's
    given = engine.zero_shot(emb, sets[0], top_k=1, label_embeddings=latest)[0]["scores"]["prompt_0"]
    own = engine.zero_shot(emb, sets[0], top_k=1)[0]["scores"]["prompt_0"]
    # the embeddings given, not recomputed, under the contrast rule: cosine with the prompt minus the reference's
    assert given == pytest.approx(float(emb[0] @ latest[0] - emb[0] @ latest[1]), abs=1e-5)
    assert abs(given - own) > 1e-4


def test_contrast_rule_subtracts_the_normal_ecg_reference_and_cosine_is_plain(engine, monkeypatch) -> None:
    """Served scores are the evaluation's contrast rule: cosine with the label minus cosine with the normal
    sinus-rhythm reference; the reference conditions (normal ECG, sinus rhythm) keep the plain cosine."""
    from esi.serving.labels import reference_label

    labels = resolve_labels(["AF", "sinus rhythm"])
    emb = engine.embed(ecg_batch(2), fs=500)
    plain = engine.label_embeddings(labels)
    ref = engine.label_embeddings(resolve_labels(None, list(reference_label().prompts)))
    ref = ref.mean(0) / np.linalg.norm(ref.mean(0))  # the reference label: its prompts' mean, re-normalised
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    got = engine.scores(emb, labels)
    assert engine.score_rule == "contrast"
    np.testing.assert_allclose(got[:, 0], e @ plain[0] - e @ ref, atol=1e-5)
    np.testing.assert_allclose(got[:, 1], e @ plain[1], atol=1e-5)  # sinus rhythm is the reference itself
    monkeypatch.setattr(engine, "score_rule", "cosine")
    np.testing.assert_allclose(engine.scores(emb, labels), e @ plain.T, atol=1e-5)
