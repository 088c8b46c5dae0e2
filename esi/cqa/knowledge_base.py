"""The ECG knowledge base: the project's condition corpus plus user documents in a Chroma collection.

Build: load documents (markdown, text, PDF) -> split into chunks (markdown by section heading, long sections
further by size) with metadata (source, title, section, condition ids) -> embed -> Chroma persistent
collection through ``langchain_chroma``. Chunk ids are content hashes, so a re-build embeds only new or
changed chunks and deletes the chunks of documents that changed or disappeared.

The collection's metadata records the embedding model (``embedding_id``), the knowledge-base version (a hash
over all chunk ids; part of the caption cache key) and the user documents that were added, so a later
``esi kb build`` re-scans them. Opening it with another embedding model is an error, never silent garbage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esi.errors import DataError, DatasetNotFoundError, KnowledgeBaseError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

log = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).parent / "corpus"
COLLECTION = "esi-knowledge-base"
KB_SCHEMA = 1
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text"}
PDF_SUFFIXES = {".pdf"}
DOC_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES
MAX_CHUNK_CHARS = 1200  # a long section is split further: MiniLM reads 256 tokens at most
CHUNK_OVERLAP = 150
EMBED_BATCH = 64


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk: its text (without the title line), similarity score and metadata."""

    text: str
    score: float
    condition_ids: tuple[str, ...]
    section: str
    source: str
    title: str = ""
    chunk_id: str = ""
    aliases: tuple[str, ...] = ()


@dataclass
class Chunk:
    """A piece of a document as stored: ``content`` is what gets embedded (title line + body)."""

    id: str
    content: str
    body: str
    metadata: dict[str, Any]


@dataclass
class KbBuildSummary:
    """What a build did."""

    kb_dir: str
    embedding_id: str
    kb_version: str
    documents: int = 0
    chunks: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    user_sources: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- condition mentions


class MentionFinder:
    """Find the vocabulary conditions a text names (by name, synonym, or a distinctive abbreviation).

    Longer names win over the names they contain ("rapid atrial fibrillation" is one mention, not also
    "atrial fibrillation"). Names and synonyms match case-insensitively; code-like terms (abbreviations,
    "AFIB") only in capitals and when at least three characters long. A few words that are common in any
    ECG text ("normal", "infarction") and abbreviations with a second meaning (LAD: the artery; ICD: the
    device) never count.
    """

    AMBIGUOUS_ABBREVIATIONS = frozenset({"LAD", "ICD", "NORM", "CHD", "ABER", "SAB", "CAD", "VT", "APC"})
    GENERIC_WORDS = frozenset({"normal", "arrhythmia", "infarct", "infarction", "ischemia", "ischaemia",
                               "couplet", "aberrancy", "cad", "edis"})

    FEATURE_WORDS = re.compile(r"\b(waves?|interval|segment|axis|voltages?|qrs|st|st-t|rotation|loop"
                               r"|progression|repolari[sz]ation|strain|complexes)\b")
    DIAGNOSIS_WORDS = re.compile(r"tachycardia|aneurysm|paired")
    GENERIC_NAMES = frozenset({"bradycardia", "cardiac dysrhythmia"})

    def __init__(self, entries: Iterable[tuple[str, Iterable[str], Iterable[str]]]) -> None:
        """``entries``: (condition_id, names and synonyms, abbreviations)."""
        words: dict[str, str] = {}
        abbrevs: dict[str, str] = {}

        def add_code(term: str, cid: str) -> None:
            if (len(term) >= 3 and sum(c.isupper() for c in term) >= 2
                    and term not in self.AMBIGUOUS_ABBREVIATIONS and re.fullmatch(r"[A-Za-z0-9]+", term)):
                abbrevs.setdefault(term, cid)

        for cid, names, abbreviations in entries:
            for name in names:
                name = " ".join(str(name).split())
                if " " not in name and (any(c.isdigit() or c == "_" for c in name)
                                        or sum(c.isupper() for c in name) >= 2):
                    add_code(name, cid)  # a code-like synonym such as AFIB or 1AVB
                elif " " in name or (len(name) >= 4 and name.lower() not in self.GENERIC_WORDS):
                    words.setdefault(name.lower(), cid)
            for abbr in abbreviations:
                add_code(str(abbr).strip(), cid)
        self._words = words
        self._abbrevs = abbrevs
        self._terms_of: dict[str, set[str]] = {}
        for term, cid in words.items():
            self._terms_of.setdefault(cid, set()).add(term)
        # conditions whose name is a waveform feature ("ST depression", "left axis deviation"): any
        # description may name them as features, so they never make a text ungrounded
        self.descriptive: set[str] = {
            cid for term, cid in words.items()
            if self.FEATURE_WORDS.search(term) and not self.DIAGNOSIS_WORDS.search(term)
        } | {cid for term, cid in words.items() if term in self.GENERIC_NAMES}
        self._memo: dict[str, tuple[tuple[str, str], ...]] = {}
        self._word_re = self._alternation(words, re.IGNORECASE)
        self._abbr_re = self._alternation(abbrevs, 0)

    @staticmethod
    def _alternation(terms: dict[str, str], flags: int) -> re.Pattern[str] | None:
        if not terms:
            return None
        # longest first, so that at one position the most specific name matches
        parts = [r"\s+".join(re.escape(w) for w in t.split()) for t in sorted(terms, key=len, reverse=True)]
        return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(parts) + r")(?![A-Za-z0-9])", flags)

    @classmethod
    def from_vocabulary(cls, vocab: Any = None) -> MentionFinder:
        """Build from the condition vocabulary (``esi.conditions.vocabulary.load_vocabulary()`` by default)."""
        if vocab is None:
            from esi.conditions.vocabulary import load_vocabulary

            vocab = load_vocabulary()
        entries = []
        for cond in vocab:
            synonyms = cond.synonyms
            if isinstance(synonyms, str):
                synonyms = [s for s in synonyms.split("|") if s]
            abbreviations = [cond.abbreviation] if cond.abbreviation else []
            entries.append((cond.condition_id, [cond.name, *synonyms], abbreviations))
        return cls(entries)

    def find(self, text: str) -> list[tuple[str, str]]:
        """(condition_id, matched text) for every mention, in order of appearance (memoised per text:
        the same knowledge-base sentences are checked again for every signature that shares a condition)."""
        hit = self._memo.get(text)
        if hit is None:
            hit = self._find(text)
            if len(self._memo) >= 200_000:
                self._memo.clear()
            self._memo[text] = hit
        return list(hit)

    def _find(self, text: str) -> tuple[tuple[str, str], ...]:
        hits: list[tuple[int, int, str, str]] = []
        if self._word_re is not None:
            for m in self._word_re.finditer(text):
                key = " ".join(m.group(0).lower().split())
                hits.append((m.start(), m.end(), self._words[key], m.group(0)))
        if self._abbr_re is not None:
            for m in self._abbr_re.finditer(text):
                if not any(s <= m.start() < e for s, e, _, _ in hits):
                    hits.append((m.start(), m.end(), self._abbrevs[m.group(0)], m.group(0)))
        return tuple((cid, found) for _, _, cid, found in sorted(hits))

    def foreign(self, text: str, condition_ids: Iterable[str]) -> list[tuple[str, str]]:
        """Mentions of conditions outside ``condition_ids``: (condition_id, matched text).

        Not foreign: a condition of the set, a waveform-feature condition (see ``descriptive``), and a more
        general name contained in a name of the set ("bundle branch block" for right bundle branch block).
        """
        allowed = set(condition_ids)
        own_terms = [t for cid in allowed for t in self._terms_of.get(cid, ())]
        out = []
        for cid, found in self.find(text):
            if cid in allowed or cid in self.descriptive:
                continue
            key = " ".join(found.lower().split())
            names = self._terms_of.get(cid, set()) | {key}
            if any(n in own for n in names for own in own_terms):
                continue
            out.append((cid, found))
        return out

    def condition_ids(self, text: str) -> list[str]:
        """Distinct condition ids mentioned, in order of first appearance."""
        return list(dict.fromkeys(cid for cid, _ in self.find(text)))


# --------------------------------------------------------------------------- loading and splitting


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def parse_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split an optional '---' delimited ``key: value`` block from the top of a markdown text."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            meta = {}
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep and key.strip():
                    meta[key.strip()] = value.strip().strip('"').strip("'")
            return meta, "\n".join(lines[end + 1:])
    return {}, text


def _markdown_sections(body: str, default_title: str) -> tuple[str, list[tuple[str, str]]]:
    """The title (first H1) and (section heading, text) pairs; text before any heading is 'Overview'."""
    title = None
    sections: list[tuple[str, list[str]]] = [("Overview", [])]
    stack: list[tuple[int, str]] = []  # heading path below H1, so a sub-section keeps its parent's name
    for line in body.splitlines():
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            level, heading = len(m.group(1)), m.group(2).strip()
            if level == 1 and title is None:
                title = heading
                continue
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, heading)]
            sections.append((" > ".join(h for _, h in stack), []))
        else:
            sections[-1][1].append(line)
    pairs = [(name, "\n".join(lines).strip()) for name, lines in sections]
    return title or default_title, [(n, t) for n, t in pairs if t]


def _split_long(text: str) -> list[str]:
    if len(text) <= MAX_CHUNK_CHARS:
        return [text]
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=MAX_CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP,
                                              separators=["\n\n", "\n- ", "\n", ". ", " ", ""])
    return [t.strip() for t in splitter.split_text(text) if t.strip()]


def _read_pdf(path: Path) -> list[tuple[str, str]]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise DataError("PDF documents need the pypdf package", path=str(path),
                        fix="pip install pypdf (or convert the PDF to text/markdown)") from exc
    try:
        reader = PdfReader(str(path))
        pages = [(f"page {i + 1}", (page.extract_text() or "").strip())
                 for i, page in enumerate(reader.pages)]
    except Exception as exc:  # pypdf raises many types for damaged files
        raise DataError(f"cannot read PDF: {exc}", path=str(path),
                        fix="check the file opens in a PDF viewer, or convert it to text") from exc
    pages = [(name, text) for name, text in pages if text]
    if not pages:
        raise DataError("the PDF has no extractable text (scanned images?)", path=str(path),
                        fix="run OCR on it first, or give a text/markdown version")
    return pages


def split_document(path: Path, source: str, finder: MentionFinder | None = None) -> list[Chunk]:
    """Split one document into chunks with metadata.

    Condition ids come from the front matter (``condition_id``, comma-separated ids allowed) when present;
    otherwise, if a ``finder`` is given, from the conditions each chunk names.
    """
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        meta: dict[str, str] = {}
        title = path.stem
        sections = _read_pdf(path)
        kind = "pdf"
    elif suffix in TEXT_SUFFIXES:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError("document is not UTF-8 text", path=str(path),
                            fix="save it as UTF-8 (or give a PDF)") from exc
        meta, body = parse_front_matter(text)
        if suffix in (".md", ".markdown"):
            title, sections = _markdown_sections(body, meta.get("name") or path.stem)
            kind = "markdown"
        else:
            title, kind = meta.get("name") or path.stem, "text"
            sections = [(f"part {i + 1}", p.strip()) for i, p in enumerate(re.split(r"\n\s*\n\s*\n", body))
                        if p.strip()] if len(body) > MAX_CHUNK_CHARS else [("text", body.strip())]
        title = meta.get("name") or title
    else:
        raise DataError(f"unsupported document type {suffix!r}", path=str(path),
                        fix=f"give markdown, text or PDF files ({', '.join(sorted(DOC_SUFFIXES))})")
    fixed_ids = [c.strip() for c in meta.get("condition_id", "").split(",") if c.strip()]
    chunks: list[Chunk] = []
    for section, text in sections:
        for part, piece in enumerate(_split_long(text)):
            header = f"{title} - {section}"
            content = f"{header}\n{piece}"
            ids = fixed_ids or (finder.condition_ids(f"{title}\n{piece}") if finder else [])
            md: dict[str, Any] = {"source": source, "title": title, "section": section, "part": part,
                                  "kind": kind, "header_chars": len(header) + 1}
            if ids:
                md["condition_ids"] = ids
            if meta.get("category"):
                md["category"] = meta["category"]
            aliases = [a.strip() for a in [meta.get("abbreviation", ""), *meta.get("synonyms", "").split("|")]
                       if a.strip()]
            if aliases:
                md["aliases"] = aliases
            chunk_id = _hash(source, content, json.dumps(md, sort_keys=True))[:32]
            chunks.append(Chunk(chunk_id, content, piece, md))
    return chunks


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p).expanduser().resolve()
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in DOC_SUFFIXES)
            if not found:
                log.warning("no documents (%s) under %s", ", ".join(sorted(DOC_SUFFIXES)), path)
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise DatasetNotFoundError(f"document {path} does not exist; fix: give existing files or folders "
                                       "to --docs")
    return out


def corpus_files(corpus_dir: Path | None = None) -> list[Path]:
    """The project's condition documents (esi/cqa/corpus/*.md), sorted."""
    d = corpus_dir or CORPUS_DIR
    return sorted(d.glob("*.md")) if d.is_dir() else []


# --------------------------------------------------------------------------- the store


def _client(kb_dir: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    kb_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(kb_dir), settings=ChromaSettings(anonymized_telemetry=False))


def _get_collection(client: Any) -> Any | None:
    try:
        return client.get_collection(COLLECTION)
    except Exception:  # chromadb raises NotFoundError (or ValueError in older versions)
        return None


def _mismatch_error(kb_dir: Path, built_with: str, wanted: str) -> KnowledgeBaseError:
    return KnowledgeBaseError(
        f"the knowledge base at {kb_dir} was built with the embedding model {built_with!r}, not {wanted!r}; "
        f"fix: configure the same embeddings (ESI_EMBEDDINGS / ESI_EMBEDDING_MODEL) or rebuild it with "
        f"'esi kb build --rebuild --kb-dir {kb_dir}'")


class KnowledgeBase:
    """An opened knowledge base: similarity search over the Chroma collection through LangChain."""

    def __init__(self, kb_dir: Path, embeddings: Embeddings, client: Any) -> None:
        from langchain_chroma import Chroma

        from esi.cqa.embeddings import embedding_id_of

        self.kb_dir = kb_dir
        self.embeddings = embeddings
        self._client = client
        col = _get_collection(client)
        if col is None:
            raise KnowledgeBaseError(f"no knowledge base at {kb_dir}; fix: build it with "
                                     f"'esi kb build --kb-dir {kb_dir}'")
        meta = col.metadata or {}
        built_with = meta.get("embedding_id")
        self.embedding_id = embedding_id_of(embeddings)
        if built_with != self.embedding_id:
            raise _mismatch_error(kb_dir, str(built_with), self.embedding_id)
        self.version: str = str(meta.get("kb_version", ""))
        self.metadata = dict(meta)
        self.store = Chroma(collection_name=COLLECTION, embedding_function=embeddings, client=client,
                            create_collection_if_not_exists=False)

    def count(self) -> int:
        """Number of chunks."""
        return int(self.store._collection.count())

    def query(self, text: str, k: int = 5, condition_id: str | None = None) -> list[Passage]:
        """The ``k`` best chunks for ``text``, optionally only those tagged with ``condition_id``.

        Ranking is hybrid: cosine similarity of the embeddings, plus ``TITLE_BONUS`` for chunks whose document
        the query names (its title, abbreviation or a synonym; when several nested names match, only the
        longest counts, so "right bundle branch block" does not boost "bundle branch block").
        ``Passage.score`` is that ranking score.
        """
        return self.query_many([text], k=k, condition_ids=[condition_id])[0]

    def query_many(self, texts: Sequence[str], k: int = 5,
                   condition_ids: Sequence[str | None] | None = None) -> list[list[Passage]]:
        """Several queries at once (one embedding call for all of them); see :meth:`query`."""
        conds = list(condition_ids) if condition_ids is not None else [None] * len(texts)
        if len(conds) != len(texts):
            raise ValueError("condition_ids must have one entry per query text")
        vectors = self.embeddings.embed_documents(list(texts))
        fetch = max(4 * k, 20)  # candidates for the re-ranking
        out = []
        for text, vec, cid in zip(texts, vectors, conds, strict=True):
            where = {"condition_ids": {"$contains": cid}} if cid else None
            results = self.store.similarity_search_by_vector_with_relevance_scores(vec, k=fetch, filter=where)
            passages = []
            for doc, distance in results:
                md = doc.metadata or {}
                passages.append(Passage(
                    text=doc.page_content[int(md.get("header_chars", 0)):], score=1.0 - float(distance),
                    condition_ids=tuple(md.get("condition_ids") or ()), section=str(md.get("section", "")),
                    source=str(md.get("source", "")), title=str(md.get("title", "")),
                    chunk_id=str(doc.id or ""), aliases=tuple(md.get("aliases") or ())))
            out.append(_rerank(text, passages)[:k])
        return out


TITLE_BONUS = 0.1


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _rerank(query: str, passages: list[Passage]) -> list[Passage]:
    """Add TITLE_BONUS to passages whose document the query names (longest nested name only); sort."""
    q = f" {_norm(query)} "
    names_of = [{n for n in (_norm(x) for x in (p.title, *p.aliases)) if len(n) >= 2} for p in passages]
    matched = {n for names in names_of for n in names if f" {n} " in q}
    # a matched name inside a longer matched name is a generalisation of it: it gets no bonus
    kept = {n for n in matched if not any(n != m and f" {n} " in f" {m} " for m in matched)}
    scored = []
    for p, names in zip(passages, names_of, strict=True):
        bonus = TITLE_BONUS if names & kept else 0.0
        scored.append(dataclasses.replace(p, score=round(p.score + bonus, 6)))
    return sorted(scored, key=lambda p: -p.score)


def open_knowledge_base(kb_dir: str | Path | None = None,
                        embeddings: Embeddings | None = None) -> KnowledgeBase:
    """Open the knowledge base at ``kb_dir`` (default ``settings.kb_dir``) for queries.

    Raises KnowledgeBaseError when there is none, or when it was built with another embedding model.
    """
    from esi.cqa.embeddings import get_embeddings
    from esi.settings import get_settings

    kb_dir = Path(kb_dir) if kb_dir else get_settings().kb_dir
    if not (kb_dir / "chroma.sqlite3").exists():
        raise KnowledgeBaseError(f"no knowledge base at {kb_dir}; fix: build it with 'esi kb build --kb-dir "
                                 f"{kb_dir}'")
    return KnowledgeBase(kb_dir, embeddings or get_embeddings(), _client(kb_dir))


def build_knowledge_base(kb_dir: str | Path | None = None, docs: Sequence[str | Path] = (), *,
                         include_corpus: bool = True, embeddings: Embeddings | None = None,
                         progress: bool = True, rebuild: bool = False,
                         corpus_dir: str | Path | None = None) -> KbBuildSummary:
    """Build or update the knowledge base (incremental: only new or changed chunks are embedded).

    Args:
        kb_dir: Chroma folder (default ``settings.kb_dir``).
        docs: extra files or folders (markdown, text, PDF). They are remembered: later builds re-scan them,
            and drop the chunks of those that were deleted.
        include_corpus: include the project's condition corpus (esi/cqa/corpus).
        embeddings: LangChain embeddings (default :func:`esi.cqa.embeddings.get_embeddings`).
        rebuild: drop the collection first (needed to switch embedding model).
        corpus_dir: another corpus folder (tests).
    """
    from langchain_chroma import Chroma
    from tqdm import tqdm

    from esi.cqa.embeddings import embedding_id_of, get_embeddings
    from esi.settings import get_settings

    t0 = time.perf_counter()
    kb_dir = Path(kb_dir) if kb_dir else get_settings().kb_dir
    embeddings = embeddings or get_embeddings()
    emb_id = embedding_id_of(embeddings)
    client = _client(kb_dir)
    col = _get_collection(client)
    previous_sources: list[str] = []
    if col is not None:
        meta = col.metadata or {}
        if rebuild:
            client.delete_collection(COLLECTION)
            col = None
        elif meta.get("embedding_id") != emb_id:
            raise _mismatch_error(kb_dir, str(meta.get("embedding_id")), emb_id)
        else:
            previous_sources = json.loads(meta.get("user_sources", "[]"))

    # user documents: the ones remembered from earlier builds (if they still exist) plus the new ones
    kept = []
    for src in previous_sources:
        if Path(src).exists():
            kept.append(src)
        else:
            log.warning("document %s no longer exists: its chunks are removed from the knowledge base", src)
    user_sources = list(dict.fromkeys([*kept, *(str(Path(p).expanduser().resolve()) for p in docs)]))
    user_files = _expand(user_sources)
    corpus = corpus_files(Path(corpus_dir) if corpus_dir else None) if include_corpus else []
    if not corpus and not user_files:
        raise KnowledgeBaseError(
            "nothing to index: the project corpus is " + ("empty" if include_corpus else "excluded")
            + " and no documents were given; fix: pass --docs PATH (markdown, text or PDF)")

    finder = None
    if user_files:
        try:
            finder = MentionFinder.from_vocabulary()
        except ImportError:  # pragma: no cover - the vocabulary is part of the package
            log.warning("condition vocabulary unavailable: user documents are not tagged with conditions")
    chunks: dict[str, Chunk] = {}
    corpus_root = corpus[0].parent if corpus else None
    for path in corpus:
        for ch in split_document(path, f"corpus/{path.relative_to(corpus_root)}"):
            chunks[ch.id] = ch
    for path in user_files:
        for ch in split_document(path, str(path), finder):
            chunks[ch.id] = ch

    if col is None:
        store = Chroma(collection_name=COLLECTION, embedding_function=embeddings, client=client,
                       collection_metadata={"embedding_id": emb_id, "schema": KB_SCHEMA},
                       collection_configuration={"hnsw": {"space": "cosine"}})
    else:
        store = Chroma(collection_name=COLLECTION, embedding_function=embeddings, client=client,
                       create_collection_if_not_exists=False)
    collection = store._collection
    existing = set(collection.get(include=[])["ids"])
    wanted = set(chunks)
    stale = sorted(existing - wanted)
    new = [chunks[i] for i in sorted(wanted - existing)]
    if stale:
        store.delete(ids=stale)
    bar = tqdm(total=len(new), desc="embed chunks", unit="chunk", disable=not progress or not new)
    for start in range(0, len(new), EMBED_BATCH):
        batch = new[start:start + EMBED_BATCH]
        store.add_texts([c.content for c in batch], metadatas=[c.metadata for c in batch],
                        ids=[c.id for c in batch])
        bar.update(len(batch))
    bar.close()
    version = _hash(emb_id, *sorted(wanted))[:16]
    collection.modify(metadata={"embedding_id": emb_id, "schema": KB_SCHEMA, "kb_version": version,
                                "user_sources": json.dumps(user_sources), "n_chunks": len(wanted),
                                "built": time.strftime("%Y-%m-%dT%H:%M:%S")})
    summary = KbBuildSummary(kb_dir=str(kb_dir), embedding_id=emb_id, kb_version=version,
                             documents=len(corpus) + len(user_files), chunks=len(wanted), added=len(new),
                             removed=len(stale), unchanged=len(wanted) - len(new), user_sources=user_sources,
                             seconds=time.perf_counter() - t0)
    log.info("knowledge base %s: %d documents, %d chunks (%d embedded, %d removed, %d unchanged) in %.1f s",
             kb_dir, summary.documents, summary.chunks, summary.added, summary.removed, summary.unchanged,
             summary.seconds)
    return summary
