"""Knowledge base: splitting, building (incremental), retrieval quality, embedding-model guard, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from openai_server import EMBED_DIM, FakeOpenAI, hashed_embedding
from typer.testing import CliRunner

from esi.cqa.knowledge_base import (
    CORPUS_DIR,
    MentionFinder,
    build_knowledge_base,
    corpus_files,
    open_knowledge_base,
    parse_front_matter,
    split_document,
)
from esi.errors import DataError, DatasetNotFoundError, KnowledgeBaseError

DOC_A = """---
condition_id: 59118001
name: right bundle branch block
abbreviation: RBBB
category: conduction
---
# right bundle branch block

## Definition
The right bundle does not conduct. The right ventricle is activated late.

## Diagnostic criteria
- The QRS duration is 120 ms or longer in adults.
- An rsR' complex appears in V1 and V2.

## Waveform features
- A wide S wave longer than 40 ms is seen in leads I and V6.
"""


class HashEmbeddings:
    """Cheap deterministic LangChain-style embeddings (hashed words) with their own id."""

    embedding_id = "test:hashed-words"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [hashed_embedding(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return hashed_embedding(text)


def _recall_at_3(kb, docs: dict[str, tuple[str, str]]) -> tuple[float, list]:
    """Share of conditions whose own document is among the sources of the top 3 passages for its name."""
    ids = list(docs)
    results = kb.query_many([docs[c][0] for c in ids], k=3)
    misses = [(docs[c][0], [p.source for p in ps]) for c, ps in zip(ids, results, strict=True)
              if f"corpus/{docs[c][1]}" not in {p.source for p in ps}]
    return 1 - len(misses) / len(ids), misses


def _corpus_docs(folder: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for p in corpus_files(folder):
        meta, _ = parse_front_matter(p.read_text(encoding="utf-8"))
        out[meta["condition_id"]] = (meta["name"], p.name)
    return out


# --------------------------------------------------------------------------- splitting


def test_split_corpus_document_by_section():
    path = CORPUS_DIR / "59118001.md"
    if not path.exists():
        pytest.skip("corpus document for RBBB not written yet")
    chunks = split_document(path, "corpus/59118001.md")
    sections = [c.metadata["section"] for c in chunks]
    assert sections[:5] == ["Definition", "Diagnostic criteria", "Waveform features", "Leads where it shows",
                            "Common mimics"]
    for c in chunks:
        assert c.metadata["condition_ids"] == ["59118001"]
        assert c.metadata["source"] == "corpus/59118001.md"
        assert c.content.startswith("right bundle branch block - ")  # title line is embedded ...
        assert c.content[c.metadata["header_chars"]:] == c.body  # ... but not part of the passage text
        assert "---" not in c.body and "condition_id" not in c.body
    assert len({c.id for c in chunks}) == len(chunks)


def test_split_user_text_tags_conditions_by_mention(tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("Atrial fibrillation shows no P waves and irregular RR intervals.\n"
                   "Right bundle branch block widens the QRS beyond 120 ms.\n")
    chunks = split_document(doc, str(doc), MentionFinder.from_vocabulary())
    assert len(chunks) == 1
    assert set(chunks[0].metadata["condition_ids"]) == {"164889003", "59118001"}
    assert chunks[0].metadata["kind"] == "text"


def test_long_markdown_section_is_split(tmp_path):
    doc = tmp_path / "long.md"
    para = "Left bundle branch block gives a broad notched R wave in V6 lasting 140 ms. " * 40
    doc.write_text(f"# Chapter\n\n## Long part\n\n{para}\n")
    chunks = split_document(doc, "long.md")
    assert len(chunks) > 1
    assert all(len(c.body) <= 1200 for c in chunks)
    assert all(c.metadata["section"] == "Long part" for c in chunks)


def _write_pdf(path: Path, lines: list[str]) -> None:
    """A minimal one-page PDF with a text layer (Helvetica), offsets computed for a valid xref."""
    text_ops = "BT /F1 11 Tf 50 750 Td 14 TL " + " ".join(
        "(" + ln.replace("(", "\\(").replace(")", "\\)") + ") '" for ln in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(text_ops)} >>\nstream\n{text_ops}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def test_pdf_document_is_read_page_by_page(tmp_path):
    pdf = tmp_path / "textbook.pdf"
    _write_pdf(pdf, ["Chapter 3. Atrial flutter.",
                     "Atrial flutter shows sawtooth F waves at 300 per minute."])
    chunks = split_document(pdf, str(pdf), MentionFinder.from_vocabulary())
    assert [c.metadata["section"] for c in chunks] == ["page 1"]
    assert "sawtooth" in chunks[0].body
    assert chunks[0].metadata["condition_ids"] == ["164890007"]
    assert chunks[0].metadata["kind"] == "pdf"


def test_bad_documents_give_domain_errors(tmp_path):
    bad = tmp_path / "x.docx"
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unsupported document type"):
        split_document(bad, str(bad))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"not a pdf at all")
    with pytest.raises(DataError, match="broken.pdf"):
        split_document(broken, str(broken))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        build_knowledge_base(tmp_path / "kb", docs=[tmp_path / "missing.md"], include_corpus=False,
                             embeddings=HashEmbeddings(), progress=False)


# --------------------------------------------------------------------------- building


def test_incremental_build_embeds_only_changes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "59118001.md").write_text(DOC_A)
    user = tmp_path / "user.md"
    user.write_text("# Notes\n\n## Flutter\nAtrial flutter shows sawtooth F waves at 300 per minute in II.\n")
    kb_dir = tmp_path / "kb"
    emb = HashEmbeddings()

    first = build_knowledge_base(kb_dir, docs=[user], corpus_dir=corpus, embeddings=emb, progress=False)
    assert first.added == first.chunks == 4 and first.removed == 0
    again = build_knowledge_base(kb_dir, corpus_dir=corpus, embeddings=emb, progress=False)  # docs remembered
    assert (again.added, again.removed, again.unchanged) == (0, 0, 4)
    assert again.kb_version == first.kb_version
    assert again.user_sources == [str(user.resolve())]

    # one section changes: exactly that chunk is replaced
    (corpus / "59118001.md").write_text(DOC_A.replace("40 ms", "45 ms"))
    changed = build_knowledge_base(kb_dir, corpus_dir=corpus, embeddings=emb, progress=False)
    assert (changed.added, changed.removed, changed.unchanged) == (1, 1, 3)
    assert changed.kb_version != first.kb_version

    # the user document is deleted: its chunk goes
    user.unlink()
    pruned = build_knowledge_base(kb_dir, corpus_dir=corpus, embeddings=emb, progress=False)
    assert (pruned.added, pruned.removed, pruned.chunks) == (0, 1, 3)
    kb = open_knowledge_base(kb_dir, emb)
    assert kb.count() == 3 and kb.version == pruned.kb_version
    assert all(p.source == "corpus/59118001.md" for p in kb.query("sawtooth flutter waves", k=3))


def test_embedding_model_mismatch_is_an_error(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "59118001.md").write_text(DOC_A)
    kb_dir = tmp_path / "kb"
    build_knowledge_base(kb_dir, corpus_dir=corpus, embeddings=HashEmbeddings(), progress=False)

    class Other(HashEmbeddings):
        embedding_id = "test:another-model"

    with pytest.raises(KnowledgeBaseError, match=r"test:hashed-words.*--rebuild"):
        open_knowledge_base(kb_dir, Other())
    with pytest.raises(KnowledgeBaseError, match="test:hashed-words"):
        build_knowledge_base(kb_dir, corpus_dir=corpus, embeddings=Other(), progress=False)
    rebuilt = build_knowledge_base(kb_dir, corpus_dir=corpus, embeddings=Other(), progress=False,
                                   rebuild=True)
    assert rebuilt.embedding_id == "test:another-model" and rebuilt.added == rebuilt.chunks
    assert open_knowledge_base(kb_dir, Other()).count() == rebuilt.chunks


def test_missing_or_empty_knowledge_base(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="esi kb build"):
        open_knowledge_base(tmp_path / "nothing", HashEmbeddings())
    with pytest.raises(KnowledgeBaseError, match="nothing to index"):
        build_knowledge_base(tmp_path / "kb", include_corpus=False, embeddings=HashEmbeddings(),
                             progress=False)


def test_openai_embeddings_build_and_query(tmp_path, monkeypatch):
    """The real langchain-openai embeddings client against the local OpenAI-compatible server."""
    from esi.cqa.embeddings import get_embeddings
    from esi.settings import get_settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "59118001.md").write_text(DOC_A)
    with FakeOpenAI(api_key="emb-key") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "emb-key")
        get_settings.cache_clear()
        try:
            emb = get_embeddings("openai", "text-embedding-test")
            summary = build_knowledge_base(tmp_path / "kb", corpus_dir=corpus, embeddings=emb, progress=False)
            assert summary.embedding_id.startswith("openai:text-embedding-test@http://127.0.0.1")
            assert server.requests["/v1/embeddings"] >= 1
            kb = open_knowledge_base(tmp_path / "kb", emb)
            top = kb.query("wide S wave in leads I and V6", k=1)[0]
            assert top.section == "Waveform features"
            assert len(emb.embed_query("x")) == EMBED_DIM
            monkeypatch.setenv("OPENAI_API_KEY", "wrong")
            get_settings.cache_clear()
            with pytest.raises(KnowledgeBaseError, match="OPENAI_API_KEY"):
                get_embeddings("openai", "text-embedding-test").embed_query("x")
        finally:
            get_settings.cache_clear()


# --------------------------------------------------------------------------- retrieval on the real corpus


def test_small_kb_recall_at_3(small_kb, small_corpus, local_embeddings):
    kb_dir, summary = small_kb
    kb = open_knowledge_base(kb_dir, local_embeddings)
    assert kb.count() == summary.chunks and summary.embedding_id == "local:all-MiniLM-L6-v2"
    recall, misses = _recall_at_3(kb, _corpus_docs(small_corpus))
    assert recall >= 0.95, misses


def test_query_filter_by_condition(small_kb, local_embeddings):
    kb = open_knowledge_base(small_kb[0], local_embeddings)
    passages = kb.query("QRS duration and waveform", k=4, condition_id="59118001")
    assert passages and all(p.condition_ids == ("59118001",) for p in passages)
    assert all(-1.0 <= p.score <= 1.0 for p in passages)
    assert passages == sorted(passages, key=lambda p: -p.score)


def test_full_corpus_recall_at_3(tmp_path_factory, local_embeddings):
    """Every condition document of the project corpus is in the top 3 for a query naming it."""
    docs = _corpus_docs(CORPUS_DIR)
    if len(docs) < 20:
        pytest.skip("corpus not written yet")
    kb_dir = tmp_path_factory.mktemp("full_kb")
    build_knowledge_base(kb_dir, embeddings=local_embeddings, progress=False)
    recall, misses = _recall_at_3(open_knowledge_base(kb_dir, local_embeddings), docs)
    assert recall >= 0.95, misses


# --------------------------------------------------------------------------- mentions


def test_mention_finder_prefers_longest_and_skips_ambiguous():
    f = MentionFinder.from_vocabulary()
    found = f.find("Rapid atrial fibrillation with RBBB; LAD occlusion; normal QRS; AFIB seen earlier; afib.")
    assert [cid for cid, _ in found] == ["314208002", "59118001", "164889003"]
    # generalisations and waveform-feature conditions are not foreign
    assert f.foreign("bundle branch block with ST depression and left axis deviation", ["59118001"]) == []
    assert [c for c, _ in f.foreign("unlike left bundle branch block", ["59118001"])] == ["164909002"]


# --------------------------------------------------------------------------- CLI


def test_cli_build_and_query(tmp_path, small_corpus):
    from esi.cli import app

    # the CLI builds with the configured (local) embeddings: use a tiny corpus to keep it quick
    corpus = tmp_path / "docs"
    corpus.mkdir()
    shutil.copy(small_corpus / sorted(p.name for p in small_corpus.iterdir())[0], corpus)
    kb_dir = tmp_path / "kb"
    runner = CliRunner()
    res = runner.invoke(app, ["kb", "build", "--no-corpus", "--docs", str(corpus), "--kb-dir", str(kb_dir),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "chunks" in res.output and "local:all-MiniLM-L6-v2" in res.output
    res = runner.invoke(app, ["kb", "query", "conduction block", "-k", "2", "--kb-dir", str(kb_dir)])
    assert res.exit_code == 0, res.output
    assert res.output.count("score ") == 2
    res = runner.invoke(app, ["kb", "query", "x", "--kb-dir", str(tmp_path / "none")])
    assert res.exit_code == 2 and "esi kb build" in res.output
