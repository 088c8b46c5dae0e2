"""Zero-shot class prompts, in two named schemes (one prompt builder for every zero-shot user).

- ``caption`` (default): the text the model was pretrained on. For each raw label a class aggregates, the
  prompt is what ``esi caption`` writes for a record carrying that label, without demographics: the same
  condition sentence (``esi.cqa.captions.condition_sentence``: vocabulary names, certainty words, reading
  order) followed by the waveform description the caption chain composes from the knowledge base for that
  condition signature (``CaptionChain`` + ``OfflineComposer``). A class aggregating several labels (PTB-XL
  "MI") is represented by all its members, each weighted by its frequency in the training folds.
- ``names``: the earlier scheme, class names + templates ("ECG showing ...") + statement descriptions + the
  first corpus criteria sentences, uniformly weighted (``esi.evaluation.zeroshot.class_prompts``).

Passages for the caption scheme come from the run's knowledge base when there is one (``kb_dir``, default
``settings.kb_dir``), else from the project's corpus documents directly (:class:`CorpusPassages`: the same
chunks ``esi kb build`` indexes, ranked by word overlap with the query). Both are offline and deterministic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esi.cqa.knowledge_base import Passage
    from esi.evaluation.benchmarks import Benchmark

log = logging.getLogger(__name__)

SCHEMES = ("caption", "names")
DEFAULT_SCHEME = "caption"
# The reference of the ``contrast`` score rule (esi.evaluation.zeroshot): normal ECG in sinus rhythm, the
# commonest condition signature of the pretraining captions.
REFERENCE_CONDITIONS = {"164854000": 1.0, "426783006": 1.0}


@dataclass
class ClassPrompts:
    """Prompts per class with one weight per prompt (weights of a class sum to 1)."""

    scheme: str
    texts: dict[str, list[str]]
    weights: dict[str, list[float]]
    source: str = ""
    members: dict[str, list[str]] = field(default_factory=dict)  # the raw label behind each prompt

    def to_dict(self) -> dict:
        return {
            "scheme": self.scheme,
            "source": self.source,
            "prompts": {
                c: [
                    {"text": t, "weight": round(w, 6), **({"member": m} if m else {})}
                    for t, w, m in zip(ts, self.weights[c], self.members.get(c) or [None] * len(ts), strict=True)
                ]
                for c, ts in self.texts.items()
            },
        }


# --------------------------------------------------------------------------- passages without Chroma


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@lru_cache(maxsize=1024)
def _file_chunks(path: Path) -> tuple[tuple[Passage, frozenset[str]], ...]:
    from esi.cqa.knowledge_base import Passage, split_document

    out = []
    for ch in split_document(path, f"corpus/{path.name}"):
        md = ch.metadata
        p = Passage(text=ch.body, score=0.0, condition_ids=tuple(md.get("condition_ids") or ()),
                    section=str(md.get("section", "")), source=str(md.get("source", "")),
                    title=str(md.get("title", "")), chunk_id=ch.id, aliases=tuple(md.get("aliases") or ()))
        out.append((p, frozenset(_words(ch.content))))
    return tuple(out)


class CorpusPassages:
    """A stand-in for the knowledge base that reads the corpus documents (same chunks, no embeddings).

    ``query_many`` has the knowledge base's signature; the score is the share of query words in the chunk
    (title line included), ties broken by document order, so a query for "X: diagnostic criteria and waveform
    features" ranks X's criteria and waveform sections first, as the embedding search does.
    """

    version = "corpus"

    def __init__(self, corpus_dir: str | Path | None = None) -> None:
        from esi.cqa.knowledge_base import CORPUS_DIR

        self.corpus_dir = Path(corpus_dir) if corpus_dir else CORPUS_DIR

    def _chunks(self, cid: str | None) -> list[tuple[Passage, frozenset[str]]]:
        """A condition's own document (corpus files are named by their one condition id), else every file."""
        from esi.cqa.knowledge_base import corpus_files

        if cid:
            path = self.corpus_dir / f"{cid.replace(':', '_')}.md"
            return list(_file_chunks(path)) if path.exists() else []
        return [c for path in corpus_files(self.corpus_dir) for c in _file_chunks(path)]

    def query_many(self, texts: Sequence[str], k: int = 5,
                   condition_ids: Sequence[str | None] | None = None) -> list[list[Passage]]:
        import dataclasses

        conds = list(condition_ids) if condition_ids is not None else [None] * len(texts)
        out = []
        for text, cid in zip(texts, conds, strict=True):
            q = _words(text)
            scored = []
            for pos, (p, words) in enumerate(self._chunks(cid)):
                if cid and cid not in p.condition_ids:
                    continue
                scored.append((-len(q & words) / max(len(q), 1), pos, p))
            scored.sort(key=lambda t: (t[0], t[1]))
            out.append([dataclasses.replace(p, score=-s) for s, _, p in scored[:k]])
        return out


def open_passages(kb_dir: str | Path | None = None, knowledge_base: Any | None = None) -> tuple[Any, str]:
    """(passage source, its description): the given KB, the KB at ``kb_dir`` / settings.kb_dir, or the corpus."""
    if knowledge_base is not None:
        return knowledge_base, f"knowledge base {getattr(knowledge_base, 'kb_dir', '(object)')}"
    from esi.settings import get_settings

    path = Path(kb_dir) if kb_dir else get_settings().kb_dir
    if (path / "chroma.sqlite3").exists():
        from esi.cqa.knowledge_base import open_knowledge_base
        from esi.errors import EsiError

        try:
            return open_knowledge_base(path), f"knowledge base {path}"
        except EsiError as exc:  # built with another embedding model, unreadable: say so, use the corpus
            log.warning("cannot open the knowledge base %s (%s); prompts use the corpus documents", path, exc)
    elif kb_dir:
        from esi.errors import KnowledgeBaseError

        raise KnowledgeBaseError(f"no knowledge base at {kb_dir}; fix: build it with 'esi kb build --kb-dir "
                                 f"{kb_dir}' or leave --kb-dir out to use the corpus documents")
    return CorpusPassages(), "corpus documents (esi/cqa/corpus)"


# --------------------------------------------------------------------------- the caption scheme


def member_conditions(code: str, label_system: str) -> dict[str, float]:
    """The harmonised conditions of a record carrying only ``code`` (as ``esi data prepare`` maps it)."""
    from esi.conditions.harmonize import harmonize
    from esi.conditions.vocabulary import load_vocabulary

    system = label_system if label_system in ("scp", "snomed", "icbeb") else "scp"
    found = dict(harmonize(system, {code: 100.0}).conditions)
    if found:
        return found
    vocab = load_vocabulary()
    cond = vocab.get(code) or vocab.by_abbreviation(code) or vocab.lookup(code)
    return {cond.condition_id: 1.0} if cond else {}


class CaptionTexts:
    """Caption text (no demographics) for a condition set, composed as ``esi caption`` composes it."""

    def __init__(self, passages: Any) -> None:
        from esi.conditions.vocabulary import load_vocabulary
        from esi.cqa.captions import CaptionChain
        from esi.cqa.llm import OfflineComposer

        self.vocab = load_vocabulary()
        self.chain = CaptionChain(passages, OfflineComposer(), self.vocab)
        self._descriptions: dict[str, str] = {}

    def prefetch(self, condition_sets: Sequence[dict[str, float]]) -> None:
        self.chain.prefetch(sorted({cid for c in condition_sets for cid in c}))

    def text(self, conditions: dict[str, float]) -> str:
        from esi.cqa.captions import condition_sentence, make_signature

        sig = make_signature(conditions)
        if sig not in self._descriptions:
            self._descriptions[sig] = self.chain.generator.generate(self.chain.request(sig)).text
        return " ".join(p for p in (condition_sentence(conditions, self.vocab), self._descriptions[sig]) if p)


def _label_description(code: str, label_system: str) -> str:
    if label_system == "scp":
        from esi.evaluation.benchmarks import load_statements

        st = load_statements()
        if code in st.index:
            return str(st.loc[code, "description"])
    return code


def _weights(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    if total <= 0:  # no member seen in training: every member counts the same
        return [1.0 / len(counts)] * len(counts)
    return [c / total for c in counts]


def caption_prompts(bench: Benchmark, *, kb_dir: str | Path | None = None,
                    knowledge_base: Any | None = None) -> ClassPrompts:
    """The ``caption`` scheme: one pretraining-style caption per member label, weighted by training frequency."""
    passages, source = open_passages(kb_dir, knowledge_base)
    composer = CaptionTexts(passages)
    per_class: dict[str, list[tuple[str, dict[str, float], float]]] = {}
    for cls in bench.class_names:
        counts = bench.member_counts.get(cls, {})
        rows = []
        for code in bench.class_members.get(cls) or [cls]:
            rows.append((code, member_conditions(code, bench.label_system), float(counts.get(code, 0))))
        per_class[cls] = rows
    composer.prefetch([c for rows in per_class.values() for _, c, _ in rows if c])
    texts: dict[str, list[str]] = {}
    weights: dict[str, list[float]] = {}
    members: dict[str, list[str]] = {}
    for cls, rows in per_class.items():
        merged: dict[str, list] = {}  # members with the same text (same conditions) are one prompt
        for code, conditions, count in rows:
            if conditions:
                text = composer.text(conditions)
            else:  # a label the vocabulary does not know: its description in the same template
                text = f"ECG shows {_label_description(code, bench.label_system)}."
            entry = merged.setdefault(text, [0.0, []])
            entry[0] += count
            entry[1].append(code)
        items = list(merged.items())
        if any(v[0] > 0 for _, v in items):  # members never seen in training weigh 0: nothing to embed
            items = [(t, v) for t, v in items if v[0] > 0]
        texts[cls] = [t for t, _ in items]
        weights[cls] = _weights([v[0] for _, v in items])
        members[cls] = ["+".join(v[1]) for _, v in items]
    return ClassPrompts("caption", texts, weights, source=source, members=members)


def names_prompts(bench: Benchmark, *, knowledge_base: Any | None = None) -> ClassPrompts:
    """The ``names`` scheme (class names, templates, descriptions, criteria), uniform weights."""
    from esi.evaluation.zeroshot import class_prompts

    texts = class_prompts(bench, knowledge_base=knowledge_base)
    return ClassPrompts("names", texts, {c: _weights([1.0] * len(t)) for c, t in texts.items()},
                        source="class names, vocabulary and corpus criteria sentences")


def build_prompts(bench: Benchmark, scheme: str = DEFAULT_SCHEME, *, kb_dir: str | Path | None = None,
                  knowledge_base: Any | None = None) -> ClassPrompts:
    """Class prompts of ``scheme`` ('caption' or 'names') for a benchmark."""
    from esi.errors import EvaluationError

    if scheme == "caption":
        return caption_prompts(bench, kb_dir=kb_dir, knowledge_base=knowledge_base)
    if scheme == "names":
        return names_prompts(bench)
    raise EvaluationError(f"unknown prompt scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def reference_prompts(scheme: str = DEFAULT_SCHEME, *, kb_dir: str | Path | None = None,
                      knowledge_base: Any | None = None) -> list[str]:
    """The reference text of the ``contrast`` score rule, in the words of ``scheme``: the caption of a normal
    sinus-rhythm record (``caption``), or that condition set's names and templates (``names``)."""
    if scheme == "caption":
        passages, _ = open_passages(kb_dir, knowledge_base)
        composer = CaptionTexts(passages)
        composer.prefetch([REFERENCE_CONDITIONS])
        return [composer.text(dict(REFERENCE_CONDITIONS))]
    from esi.conditions.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    names = [vocab.name(c) for c in REFERENCE_CONDITIONS if c in vocab]
    return list(dict.fromkeys([*names, f"12-lead {names[0]}", f"ECG showing {' and '.join(names[1:] or names)}"]))


def reference_classes(bench: Benchmark) -> list[bool]:
    """Per class: does one of its members carry a reference condition? Those classes are scored by plain cosine
    under the ``contrast`` rule (their contrast with the reference would be their contrast with themselves)."""
    out = []
    for cls in bench.class_names:
        found: set[str] = set()
        for code in bench.class_members.get(cls) or [cls]:
            found |= set(member_conditions(code, bench.label_system))
        out.append(bool(found & set(REFERENCE_CONDITIONS)))
    return out
