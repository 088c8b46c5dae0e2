"""Zero-shot prompts from the vocabulary and corpus; thresholds fitted on validation, never on test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import esi.evaluation.zeroshot as zs
from esi.evaluation.benchmarks import load_benchmark
from esi.evaluation.metrics import best_f1_thresholds


def test_prompts_have_several_texts_and_corpus_criteria(labelled_store: Path) -> None:
    b = load_benchmark("ptbxl", labelled_store, "superdiagnostic")
    prompts = zs.class_prompts(b)
    assert set(prompts) == set(b.class_names)
    assert all(len(p) >= 3 for p in prompts.values())
    assert "ECG showing myocardial infarction" in prompts["MI"]
    assert any("anterior myocardial infarction" in p for p in prompts["MI"])
    # criteria sentences come from the knowledge corpus (esi/cqa/corpus/<condition id>.md)
    corpus_text = {s for cid in ("164854000",) for sec in zs.corpus_sentences(cid).values() for s in sec}
    assert corpus_text and any(p in corpus_text for p in prompts["NORM"])


def test_corpus_sections_are_parsed() -> None:
    sec = zs.corpus_sentences("59118001")
    assert sec["Diagnostic criteria"] and sec["Waveform features"]
    assert zs.corpus_sentences("no-such-id") == {}


def test_thresholds_never_touch_the_test_fold(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    y_val, s_val = (rng.random((80, 3)) < 0.4).astype(int), rng.random((80, 3))
    y_test, s_test = (rng.random((90, 3)) < 0.4).astype(int), rng.random((90, 3))
    seen = []

    def spy(y, s):
        seen.append((y, s))
        return best_f1_thresholds(y, s)

    monkeypatch.setattr(zs, "best_f1_thresholds", spy)
    res = zs.evaluate_scores(["a", "b", "c"], s_val, y_val, s_test, y_test, n_bootstrap=0)
    assert len(seen) == 1 and seen[0][0] is y_val and seen[0][1] is s_val
    # Changing everything about the test fold leaves the thresholds as they were.
    res2 = zs.evaluate_scores(["a", "b", "c"], s_val, y_val, 1 - s_test, 1 - y_test, n_bootstrap=0)
    assert res["thresholds"] == res2["thresholds"]
    assert res["thresholds"] == dict(zip("abc", best_f1_thresholds(y_val, s_val).tolist(), strict=True))


def test_scores_are_cosines() -> None:
    e = np.array([[3.0, 0.0], [0.0, 2.0]])
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert np.allclose(zs.scores(e, c), np.eye(2))


def test_corpus_sentences_found_for_project_ids() -> None:
    """Conditions without a SNOMED id ('esi:...') have their corpus file under 'esi_...md'."""
    from esi.conditions.vocabulary import load_vocabulary
    from esi.evaluation.zeroshot import corpus_sentences

    missing = [cid for cid in load_vocabulary().ids() if not corpus_sentences(cid).get("Diagnostic criteria")]
    assert missing == []


def test_contrast_scores_subtract_the_reference_except_plain_classes() -> None:
    """contrast = cos(class) - cos(reference); a class holding the reference condition keeps its cosine."""
    e = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 2.0]])
    c = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ref = np.array([0.0, 0.0, 1.0])
    cos = zs.scores(e, c)
    out = zs.scores(e, c, ref, plain=[False, True])
    assert np.allclose(out[:, 0], cos[:, 0] - np.array([0.0, np.sqrt(0.5)]))
    assert np.allclose(out[:, 1], cos[:, 1])  # the plain class
    # A per-record offset shared by every class (a recording close to every caption) cancels: only the
    # contrast rule ranks these two records by their distance to the class relative to the reference.
    assert out[1, 0] < out[0, 0] and not np.allclose(out, cos)


def test_rule_scorer_builds_the_normal_caption_reference(labelled_store: Path) -> None:
    """The contrast rule's reference is the caption of a normal sinus-rhythm record; NORM is a plain class."""
    from esi.evaluation.prompts import REFERENCE_CONDITIONS, CaptionTexts, CorpusPassages, reference_classes

    b = load_benchmark("ptbxl", labelled_store, "superdiagnostic")
    plain = reference_classes(b)
    assert [c for c, p in zip(b.class_names, plain, strict=True) if p] == ["NORM"]

    class Text:  # a text tower: a fixed random embedding per text
        def eval(self):
            return self

        def parameters(self):
            return iter(())

        def tokenize(self, texts):
            import torch

            ids = torch.tensor([[abs(hash(t)) % 997] for t in texts])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def encode_text(self, ids, mask):
            import torch

            return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(int(i))) for i in ids[:, 0]])

    rule = zs.rule_scorer(Text(), b, "contrast", "caption")
    expected = CaptionTexts(CorpusPassages()).text(dict(REFERENCE_CONDITIONS))
    assert rule.reference_texts == [expected] and expected.startswith("ECG shows sinus rhythm and normal ECG")
    assert rule.plain == plain and rule.reference.shape == (8,)
    assert zs.rule_scorer(Text(), b, "cosine", "caption").reference is None
    import pytest

    from esi.errors import EvaluationError

    with pytest.raises(EvaluationError, match="score rule"):
        zs.rule_scorer(Text(), b, "softmax", "caption")
