"""The condition vocabulary: one id per ECG condition (a SNOMED CT concept id, else ``esi:<name>``).

Every label system (PTB-XL SCP codes, Challenge SNOMED codes, ICBEB classes, MIMIC report statements) is
mapped into these ids by :mod:`esi.conditions.harmonize`; captions, the knowledge corpus and zero-shot evaluation
use them.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from esi.errors import VocabularyError

DATA_DIR = Path(__file__).parent / "data"
CONDITIONS_CSV = DATA_DIR / "conditions.csv"
CATEGORIES = ("rhythm", "conduction", "morphology", "ischaemia", "other")
_COLUMNS = ("condition_id", "name", "abbreviation", "category", "snomed", "synonyms")
_ID_RE = re.compile(r"^(\d{6,18}|esi:[a-z0-9_]+)$")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case-folded, whitespace-collapsed form used for name/abbreviation/synonym look-ups."""
    return _SPACES.sub(" ", text.strip()).casefold()


@dataclass(frozen=True)
class Condition:
    """One condition of the vocabulary."""

    condition_id: str
    name: str
    abbreviation: str
    category: str
    snomed: str | None
    synonyms: tuple[str, ...] = ()

    @property
    def terms(self) -> tuple[str, ...]:
        """Name, abbreviation and synonyms (the strings a look-up accepts)."""
        return (self.name, self.abbreviation, *self.synonyms)


class Vocabulary:
    """An ordered, immutable set of conditions with look-ups by id, abbreviation and term."""

    def __init__(self, conditions: Iterable[Condition], *, source: str = "<memory>") -> None:
        self.source = source
        self._by_id: dict[str, Condition] = {}
        for cond in conditions:
            if cond.condition_id in self._by_id:
                raise VocabularyError(f"duplicate condition id {cond.condition_id!r} in {source}; "
                                      "fix: keep one row per condition id")
            self._by_id[cond.condition_id] = cond
        self._abbr: dict[str, str] = {}
        self._abbr_folded: dict[str, str] = {}
        # Term index with a priority per tier: a name beats an abbreviation beats a synonym when two
        # conditions share a string (e.g. 'AMI'), so look-ups are deterministic.
        self._terms: dict[str, tuple[int, str]] = {}
        for cond in self._by_id.values():
            self._abbr.setdefault(cond.abbreviation, cond.condition_id)
            self._abbr_folded.setdefault(normalize_text(cond.abbreviation), cond.condition_id)
            for tier, terms in enumerate(((cond.name,), (cond.abbreviation,), cond.synonyms)):
                for term in terms:
                    key = normalize_text(term)
                    if key and (key not in self._terms or self._terms[key][0] > tier):
                        self._terms[key] = (tier, cond.condition_id)

    # -- container protocol -------------------------------------------------------------------------------
    def __getitem__(self, condition_id: str) -> Condition:
        try:
            return self._by_id[condition_id]
        except KeyError:
            raise VocabularyError(f"unknown condition id {condition_id!r}; fix: use an id of {self.source} "
                                  "(see 'esi cqa conditions')") from None

    def __contains__(self, condition_id: object) -> bool:
        return condition_id in self._by_id

    def __iter__(self) -> Iterator[Condition]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} conditions from {self.source})"

    # -- look-ups -----------------------------------------------------------------------------------------
    def get(self, condition_id: str, default: Condition | None = None) -> Condition | None:
        """The condition with this id, or ``default``."""
        return self._by_id.get(condition_id, default)

    def ids(self) -> list[str]:
        """All condition ids in file order."""
        return list(self._by_id)

    def name(self, condition_id: str) -> str:
        """Display name of a condition (VocabularyError if unknown)."""
        return self[condition_id].name

    def names(self, condition_ids: Iterable[str]) -> list[str]:
        """Display names, in the given order (VocabularyError on the first unknown id)."""
        return [self[cid].name for cid in condition_ids]

    def category(self, condition_id: str) -> str:
        """rhythm | conduction | morphology | ischaemia | other."""
        return self[condition_id].category

    def by_abbreviation(self, abbreviation: str) -> Condition | None:
        """The condition with this abbreviation (exact first, then case-insensitive), or None."""
        cid = self._abbr.get(abbreviation.strip()) or self._abbr_folded.get(normalize_text(abbreviation))
        return self._by_id[cid] if cid else None

    def lookup(self, text: str) -> Condition | None:
        """Exact (case-insensitive) match of a name, abbreviation or synonym, or None."""
        hit = self._terms.get(normalize_text(text))
        return self._by_id[hit[1]] if hit else None


def _read_conditions(path: Path) -> list[Condition]:
    if not path.exists():
        raise VocabularyError(f"vocabulary file not found: {path}; fix: reinstall esi (it ships "
                              "esi/conditions/data/conditions.csv)")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise VocabularyError(f"{path}: missing column(s) {', '.join(missing)}; fix: header must be "
                                  f"{','.join(_COLUMNS)}")
        out = []
        for lineno, row in enumerate(reader, start=2):
            cid = (row["condition_id"] or "").strip()
            if not _ID_RE.match(cid):
                raise VocabularyError(f"{path} line {lineno}: condition_id {cid!r} is neither a SNOMED CT id "
                                      "nor 'esi:<lower_snake_name>'")
            category = (row["category"] or "").strip()
            if category not in CATEGORIES:
                raise VocabularyError(f"{path} line {lineno}: category {category!r} of {cid} is not one of "
                                      f"{', '.join(CATEGORIES)}")
            name = (row["name"] or "").strip()
            if not name:
                raise VocabularyError(f"{path} line {lineno}: condition {cid} has no name")
            synonyms = tuple(s.strip() for s in (row["synonyms"] or "").split("|") if s.strip())
            abbreviation = (row["abbreviation"] or "").strip()
            out.append(Condition(condition_id=cid, name=name, abbreviation=abbreviation, category=category,
                                 snomed=(row["snomed"] or "").strip() or None, synonyms=synonyms))
    return out


def read_vocabulary(path: str | Path) -> Vocabulary:
    """Read and check a conditions CSV (columns: condition_id,name,abbreviation,category,snomed,synonyms)."""
    path = Path(path)
    return Vocabulary(_read_conditions(path), source=str(path))


@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """The packaged vocabulary (read once per process)."""
    return read_vocabulary(CONDITIONS_CSV)


def get_vocabulary() -> Vocabulary:
    """Alias of :func:`load_vocabulary` (kept for callers that use this name)."""
    return load_vocabulary()
