"""Label sets for zero-shot scoring: vocabulary conditions (by id, name or abbreviation) or free-text prompts.

The default set is the whole condition vocabulary. A condition's prompts are its name, two templated
sentences and the first diagnostic-criteria and waveform-feature sentences of its knowledge-corpus document,
as in zero-shot evaluation; their text embeddings are averaged into one class embedding.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esi.conditions.vocabulary import Condition, Vocabulary, load_vocabulary
from esi.errors import ConfigError, RequestError


@dataclass(frozen=True)
class Label:
    """One scored class: an id (condition id, or ``prompt_<i>`` / a file's own id), a name and its prompts."""

    label_id: str
    name: str
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of labels; ``kind`` is vocabulary | labels | prompts | file."""

    labels: tuple[Label, ...]
    kind: str = "vocabulary"

    @property
    def ids(self) -> list[str]:
        return [lab.label_id for lab in self.labels]

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """Identifies ids + prompts (the cache key of the label embeddings)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:  # computed once per set: the default set is looked up by every request
        payload = [[lab.label_id, list(lab.prompts)] for lab in self.labels]
        return hashlib.sha1(json.dumps(payload).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": len(self), "ids": self.ids, "names": self.names}


def condition_prompts(cond: Condition) -> tuple[str, ...]:
    """Prompts of a vocabulary condition (name, templates, corpus criteria sentences)."""
    from esi.evaluation.zeroshot import CRITERIA_SECTIONS, corpus_sentences

    name = cond.name
    if "ecg" in name.lower():
        out = [name, f"12-lead {name}"]
    else:
        out = [name, f"ECG showing {name}", f"12-lead electrocardiogram with {name}"]
    sections = corpus_sentences(cond.condition_id)
    out += [sections[s][0] for s in CRITERIA_SECTIONS if sections.get(s)]
    return tuple(dict.fromkeys(out))


def condition_label(cond: Condition) -> Label:
    return Label(cond.condition_id, cond.name, condition_prompts(cond))


def resolve_condition(text: str, vocab: Vocabulary | None = None, *, field: str = "labels") -> Condition:
    """A condition from its id, abbreviation, name or synonym; RequestError with close matches otherwise."""
    vocab = vocab or load_vocabulary()
    key = str(text).strip()
    cond = vocab.get(key) or vocab.by_abbreviation(key) or vocab.lookup(key)
    if cond is not None:
        return cond
    terms = [c.name for c in vocab] + [c.abbreviation for c in vocab if c.abbreviation]
    near = difflib.get_close_matches(key, terms, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise RequestError(f"field '{field}': {key!r} is not a condition id, name or abbreviation of the "
                       f"vocabulary ({len(vocab)} conditions, see GET /info or 'esi cqa conditions'){hint} "
                       "Free text goes in 'prompts'")


REFERENCE_ID = "reference"


@functools.lru_cache(maxsize=1)
def reference_label() -> Label:
    """The reference of the ``contrast`` score rule: a normal ECG in sinus rhythm, in the prompt words the
    evaluation's ``names`` scheme uses (:func:`esi.evaluation.prompts.reference_prompts`)."""
    from esi.evaluation.prompts import reference_prompts

    return Label(REFERENCE_ID, "normal ECG in sinus rhythm (score reference)", tuple(reference_prompts("names")))


def scoring_labels(labels: LabelSet, rule: str) -> LabelSet:
    """The labels whose text embeddings score ``labels`` under ``rule``: the labels, plus the reference last
    under ``contrast``."""
    if rule == "cosine":
        return labels
    if rule != "contrast":
        raise ConfigError(f"unknown zero-shot score rule {rule!r}; use contrast or cosine (ESI_SERVE_SCORE_RULE)")
    return LabelSet((*labels.labels, reference_label()), kind=labels.kind)


def plain_labels(labels: LabelSet) -> list[bool]:
    """Labels scored by plain cosine under ``contrast``: the reference conditions themselves."""
    from esi.evaluation.prompts import REFERENCE_CONDITIONS

    return [lab.label_id in REFERENCE_CONDITIONS for lab in labels.labels]


def default_labels(vocab: Vocabulary | None = None) -> LabelSet:
    """Every condition of the vocabulary, in vocabulary order."""
    vocab = vocab or load_vocabulary()
    return LabelSet(tuple(condition_label(c) for c in vocab), kind="vocabulary")


def resolve_labels(labels: Sequence[str] | None = None, prompts: Sequence[str] | None = None,
                   vocab: Vocabulary | None = None) -> LabelSet:
    """The label set of a request: vocabulary entries in ``labels``, free text in ``prompts``, else the default.

    Duplicates (the same condition named twice, by name and by abbreviation) are kept once.
    """
    labels, prompts = list(labels or []), list(prompts or [])
    if not labels and not prompts:
        return default_labels(vocab)
    out: dict[str, Label] = {}
    for text in labels:
        cond = resolve_condition(text, vocab)
        out.setdefault(cond.condition_id, condition_label(cond))
    for i, text in enumerate(prompts):
        out.setdefault(f"prompt_{i}", Label(f"prompt_{i}", text, (text,)))
    kind = "labels" if not prompts else ("prompts" if not labels else "labels+prompts")
    return LabelSet(tuple(out.values()), kind=kind)


_ID_SAFE = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")


def load_label_file(path: str | Path, vocab: Vocabulary | None = None) -> LabelSet:
    """A label set from a file (``esi score --labels FILE``).

    - ``.json``: a list of vocabulary entries, or an object ``{"id": ["prompt", ...], ...}`` of custom labels
      (an id that is a vocabulary condition may map to ``null`` to keep its own prompts);
    - anything else: one vocabulary id, name or abbreviation per line (``#`` starts a comment).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--labels {path}: no such file; pass 'default' or a .txt/.json label file")
    vocab = vocab or load_vocabulary()
    text = path.read_text(encoding="utf-8")
    out: dict[str, Label] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--labels {path}: not valid JSON ({exc})") from None
        items = data.items() if isinstance(data, dict) else ((entry, None) for entry in data)
        for key, prompts in items:
            if prompts is None:
                cond = _file_condition(path, key, vocab)
                out.setdefault(cond.condition_id, condition_label(cond))
                continue
            if not _ID_SAFE.match(str(key)) or not isinstance(prompts, list) or not prompts or not all(
                    isinstance(p, str) and p.strip() for p in prompts):
                raise ConfigError(f"--labels {path}: entry {key!r} needs an id of letters, digits, _:.- and a "
                                  "non-empty list of prompt strings")
            name = vocab[key].name if key in vocab else prompts[0]
            out[str(key)] = Label(str(key), name, tuple(p.strip() for p in prompts))
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                cond = _file_condition(path, entry, vocab, lineno)
                out.setdefault(cond.condition_id, condition_label(cond))
    if not out:
        raise ConfigError(f"--labels {path}: the file names no label")
    return LabelSet(tuple(out.values()), kind="file")


def _file_condition(path: Path, entry: Any, vocab: Vocabulary, lineno: int | None = None) -> Condition:
    try:
        return resolve_condition(str(entry), vocab)
    except RequestError as exc:
        where = f"{path} line {lineno}" if lineno else str(path)
        raise ConfigError(f"--labels {where}: {str(exc).split(': ', 1)[1]}") from None
