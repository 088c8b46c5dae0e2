"""Fixtures of the CQA tests: a small knowledge base over real corpus documents, the local embeddings, and
manifest-only stores (captioning reads header.json and manifest.parquet only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esi.cqa.knowledge_base import CORPUS_DIR

# Corpus documents of the small test knowledge base: near neighbours on purpose (the bundle branch blocks,
# the atrial fibrillation family, infarction sites), plus what the caption tests use.
SMALL_KB_IDS = (
    "6374002", "59118001", "713426002", "164909002", "251120003", "445118002",  # bundle branches, fascicles
    "164889003", "164890007", "314208002", "426749004",  # atrial fibrillation / flutter family
    "426783006", "164854000", "426177001",  # sinus rhythm, normal ECG, sinus bradycardia
    "164865005", "54329005", "esi:inferior_mi", "esi:anteroseptal_mi", "39732003",
)


def corpus_path(condition_id: str) -> Path:
    return CORPUS_DIR / (condition_id.replace(":", "_") + ".md")


@pytest.fixture(scope="session")
def local_embeddings():
    """The shipped all-MiniLM-L6-v2 (one instance for the session: the model loads once)."""
    from esi.cqa.embeddings import get_embeddings

    return get_embeddings("local")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a few real corpus documents (those that exist already)."""
    d = tmp_path_factory.mktemp("small_corpus")
    for cid in SMALL_KB_IDS:
        src = corpus_path(cid)
        if src.exists():
            shutil.copy(src, d / src.name)
    if not any(d.iterdir()):
        pytest.skip("no corpus documents yet (esi/cqa/corpus)")
    return d


@pytest.fixture(scope="session")
def small_kb(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path, local_embeddings):
    """(kb_dir, build summary) of a knowledge base over ``small_corpus`` with the local embeddings."""
    from esi.cqa.knowledge_base import build_knowledge_base

    kb_dir = tmp_path_factory.mktemp("small_kb")
    summary = build_knowledge_base(kb_dir, corpus_dir=small_corpus, embeddings=local_embeddings,
                                   progress=False)
    return kb_dir, summary


@pytest.fixture(scope="session")
def manifest_store():
    """The function ``write(path, records) -> path`` that writes a manifest-only store."""
    return write_manifest_store


def write_manifest_store(path: Path, records: list[dict]) -> Path:
    """A complete store without signal shards: header.json + manifest.parquet (enough for captions).

    Each record: record_id, and optionally age, sex, conditions (dict), labels (dict), label_system, report,
    unmapped (list).
    """
    from esi.data.store import write_store

    rows = [{
        "record_id": r["record_id"], "source": r.get("source", "test"), "subject_id": r.get("subject_id", str(i)),
        "age": r.get("age"), "sex": r.get("sex"), "fold": r.get("fold", 1),
        "label_system": r.get("label_system", "snomed"), "labels": r.get("labels", {}),
        "conditions": r.get("conditions", {}), "report": r.get("report"), "unmapped": r.get("unmapped", []),
    } for i, r in enumerate(records)]
    return write_store(path, rows)
