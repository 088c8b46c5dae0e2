"""Zero-shot prompt schemes: the caption scheme writes what `esi caption` writes; members weighted by training
frequency; both schemes scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from esi.evaluation.benchmarks import load_benchmark
from esi.evaluation.prompts import CorpusPassages, build_prompts


def test_caption_prompt_is_the_caption_esi_caption_writes(tmp_path: Path, store_factory) -> None:
    """For a record carrying only CRBBB, `esi caption`'s text minus demographics is the class prompt."""
    from esi.cqa.captions import caption_store
    from esi.cqa.llm import OfflineComposer
    from esi.data.store import write_store
    from esi.evaluation.prompts import member_conditions

    conditions = member_conditions("CRBBB", "scp")
    store = write_store(tmp_path / "m", [{"record_id": "r1", "source": "t", "subject_id": "1", "age": 61,
                                          "sex": "M", "fold": 1, "label_system": "scp",
                                          "labels": {"CRBBB": 100.0}, "conditions": conditions,
                                          "report": None, "unmapped": []}])
    caption_store(store, tmp_path / "c.parquet", kb=CorpusPassages(), generator=OfflineComposer(),
                  cache_path=tmp_path / "cache.sqlite", progress=False)
    import pandas as pd

    caption = pd.read_parquet(tmp_path / "c.parquet")["caption"].iat[0]
    assert caption.startswith("61-year-old male. ")
    bench = load_benchmark("ptbxl", _store_with(tmp_path, store_factory, {"CRBBB": 3, "IRBBB": 1}), "subdiagnostic")
    prompts = build_prompts(bench, "caption")
    assert prompts.texts["CRBBB"] == [caption.removeprefix("61-year-old male. ")]
    assert "M-shaped" in prompts.texts["CRBBB"][0] or "ms" in prompts.texts["CRBBB"][0]  # waveform sentences


def _store_with(tmp_path: Path, store_factory, train_counts: dict[str, int]) -> Path:
    """Training-fold records with the given statements, plus validation/test records of each statement."""
    rows, k = [], 0
    for code, n in train_counts.items():
        for fold in [1] * n + [9, 10, 10, 10, 10, 10]:  # test-fold copies must not change the weights
            k += 1
            rows.append({"record_id": f"ptbxl/{k}", "subject_id": f"p{k}", "fold": fold,
                         "labels": json.dumps({code: 100.0})})
    return store_factory["write"](tmp_path / f"s{len(rows)}", np.zeros((len(rows), 12, 100)), rows)


def test_aggregated_class_members_are_weighted_by_training_frequency(tmp_path: Path, store_factory) -> None:
    store = _store_with(tmp_path, store_factory, {"IMI": 3, "AMI": 1, "NORM": 2})
    bench = load_benchmark("ptbxl", store, "superdiagnostic")
    p = build_prompts(bench, "caption")
    weights = dict(zip(p.members["MI"], p.weights["MI"], strict=True))
    assert weights == {"IMI": pytest.approx(0.75), "AMI": pytest.approx(0.25)}  # not the first few alphabetically
    assert any("inferior" in t for t in p.texts["MI"]) and any("anterior" in t for t in p.texts["MI"])
    assert all(t.startswith("ECG shows ") for ts in p.texts.values() for t in ts)
    names = build_prompts(bench, "names")
    assert "ECG showing myocardial infarction" in names.texts["MI"]
    assert np.allclose([sum(w) for w in names.weights.values()], 1.0)


def test_weighted_class_embedding_follows_the_weights() -> None:
    from esi.evaluation.zeroshot import class_embeddings

    class Fixed:  # a text tower with fixed orthogonal embeddings per prompt: the weighted mean is known
        training = False

        def eval(self) -> None: ...

        def parameters(self):
            return iter(())

        def tokenize(self, texts):
            import torch

            ids = torch.tensor([[{"a": 0, "b": 1}[t]] for t in texts])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def encode_text(self, ids, mask):
            import torch

            return torch.eye(2)[ids[:, 0]]

    emb = class_embeddings(Fixed(), {"c": ["a", "b"]}, {"c": [0.75, 0.25]})
    assert np.allclose(emb[0], np.array([3.0, 1.0]) / np.sqrt(10))
    uniform = class_embeddings(Fixed(), {"c": ["a", "b"]})
    assert np.allclose(uniform[0], np.array([1.0, 1.0]) / np.sqrt(2))


def test_unknown_scheme(labelled_store: Path) -> None:
    from esi.errors import EvaluationError

    with pytest.raises(EvaluationError, match="unknown prompt scheme"):
        build_prompts(load_benchmark("ptbxl", labelled_store), "haiku")


def test_caption_prompts_from_a_knowledge_base_match_esi_caption(tmp_path: Path, store_factory) -> None:
    """The run's knowledge base (Chroma + the local embeddings) gives the prompt `esi caption` writes with it."""
    import shutil

    import pandas as pd

    from esi.cqa.captions import caption_store
    from esi.cqa.knowledge_base import CORPUS_DIR, build_knowledge_base, open_knowledge_base
    from esi.cqa.llm import OfflineComposer
    from esi.data.store import write_store
    from esi.evaluation.prompts import member_conditions

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for cid in ("59118001", "713426002", "164909002"):  # RBBB, incomplete RBBB, LBBB: near neighbours
        shutil.copy(CORPUS_DIR / f"{cid}.md", corpus)
    build_knowledge_base(tmp_path / "kb", corpus_dir=corpus, progress=False)
    conditions = member_conditions("IRBBB", "scp")
    store = write_store(tmp_path / "m", [{"record_id": "r1", "source": "t", "subject_id": "1", "fold": 1,
                                          "label_system": "scp", "labels": {"IRBBB": 100.0},
                                          "conditions": conditions, "report": None, "unmapped": []}])
    caption_store(store, tmp_path / "c.parquet", kb=open_knowledge_base(tmp_path / "kb"),
                  generator=OfflineComposer(), cache_path=tmp_path / "cache.sqlite", progress=False)
    caption = pd.read_parquet(tmp_path / "c.parquet")["caption"].iat[0]
    bench = load_benchmark("ptbxl", _store_with(tmp_path, store_factory, {"IRBBB": 2, "CRBBB": 1}), "subdiagnostic")
    prompts = build_prompts(bench, "caption", kb_dir=tmp_path / "kb")
    assert prompts.source.startswith("knowledge base")
    assert prompts.texts["IRBBB"] == [caption.removeprefix("Patient of unknown age and sex. ")]
