"""Label harmonisation: raw labels of any source -> condition ids of the vocabulary, with a certainty 0..1.

Label systems:
- ``scp``: PTB-XL SCP-ECG codes with their likelihood 0-100. PTB-XL writes likelihood 0 for "unspecified",
  which we read as certainty 1.0; otherwise certainty = likelihood / 100.
- ``snomed``: SNOMED CT codes of the PhysioNet/CinC Challenge 2020/2021 headers (certainty 1.0). A code that
  is a condition id maps to itself; codes the Challenge scores as equivalent are in ``data/snomed_map.csv``.
- ``icbeb``: the 9 CPSC 2018 classes, by name or by number 1..9 (``data/icbeb_map.csv``).
- ``mimic``: MIMIC-IV-ECG machine-report statements, mapped by the rules of :mod:`esi.conditions.mimic_rules`.
- ``text``: free-text diagnosis statements of a header (LUDB's ``#<diagnoses>:`` block), mapped by
  :func:`esi.conditions.text_labels.map_text_label`.
- ``none``: no labels.

A ``snomed`` label that is not a code (``AF``, ``I-AVB``, ``Normal``: text labels of the first CPSC 2018
release) is mapped as a text label too, so such records keep their conditions.

An unknown code or statement never raises: it goes to ``Harmonized.unmapped`` (logged at debug level and
counted in :func:`unmapped_counts`), so one odd label never drops a record.
"""

from __future__ import annotations

import csv
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from esi.conditions.text_labels import is_code, map_text_label
from esi.conditions.vocabulary import DATA_DIR, load_vocabulary
from esi.errors import ConfigError, VocabularyError

log = logging.getLogger(__name__)

LABEL_SYSTEMS = ("scp", "snomed", "icbeb", "mimic", "text", "none")
# machine_measurements.csv statements are joined with this separator by esi.data.readers.mimic
MIMIC_SEPARATOR = "; "

_unmapped_counter: Counter[tuple[str, str]] = Counter()
_counter_lock = threading.Lock()


@dataclass
class Harmonized:
    """Result of harmonising one record's labels."""

    conditions: dict[str, float] = field(default_factory=dict)  # condition id -> certainty 0..1
    unmapped: list[str] = field(default_factory=list)  # raw labels/statements that map to nothing
    non_diagnostic: list[str] = field(default_factory=list)  # statements classified non-diagnostic

    def add(self, condition_id: str, certainty: float) -> None:
        """Keep the highest certainty when several labels give the same condition."""
        certainty = min(1.0, max(0.0, float(certainty)))
        if certainty > self.conditions.get(condition_id, -1.0):
            self.conditions[condition_id] = certainty


def read_map(path: Path, key_column: str, *, fold_case: bool = False) -> dict[str, tuple[str, ...]]:
    """Read a mapping CSV (key, condition_ids joined by '|', note); check every id against the vocabulary."""
    vocab = load_vocabulary()
    if not path.exists():
        raise VocabularyError(f"mapping file not found: {path}; fix: reinstall esi (it ships esi/conditions/data/)")
    table: dict[str, tuple[str, ...]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if key_column not in (reader.fieldnames or []) or "condition_ids" not in (reader.fieldnames or []):
            raise VocabularyError(f"{path}: header must contain {key_column},condition_ids")
        for lineno, row in enumerate(reader, start=2):
            key = (row[key_column] or "").strip()
            ids = tuple(i.strip() for i in (row["condition_ids"] or "").split("|") if i.strip())
            if not key or not ids:
                raise VocabularyError(f"{path} line {lineno}: empty {key_column} or condition_ids")
            for cid in ids:
                if cid not in vocab:
                    raise VocabularyError(f"{path} line {lineno}: condition id {cid!r} (for {key!r}) is not "
                                          f"in the vocabulary {vocab.source}; fix: correct the id or add the "
                                          "condition to conditions.csv")
            table[key.casefold() if fold_case else key] = ids
    return table


@lru_cache(maxsize=1)
def scp_table() -> dict[str, tuple[str, ...]]:
    """PTB-XL SCP code -> condition ids."""
    return read_map(DATA_DIR / "scp_map.csv", "scp_code")


@lru_cache(maxsize=1)
def snomed_table() -> dict[str, tuple[str, ...]]:
    """SNOMED CT code -> condition ids (vocabulary ids and their SNOMED field, plus Challenge equivalents)."""
    table = {c.snomed: (c.condition_id,) for c in load_vocabulary() if c.snomed}
    table.update({c.condition_id: (c.condition_id,) for c in load_vocabulary()})
    table.update(read_map(DATA_DIR / "snomed_map.csv", "snomed_code"))
    return table


@lru_cache(maxsize=1)
def icbeb_table() -> dict[str, tuple[str, ...]]:
    """ICBEB/CPSC 2018 class name or number (case-folded) -> condition ids."""
    return read_map(DATA_DIR / "icbeb_map.csv", "label", fold_case=True)


def _scp_certainty(likelihood: object) -> float:
    try:
        value = float(likelihood)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0
    if not math.isfinite(value) or value <= 0:
        return 1.0  # PTB-XL: 0 = likelihood unspecified
    return min(1.0, value / 100.0)


def _note_unmapped(system: str, label: str, out: Harmonized) -> None:
    out.unmapped.append(label)
    with _counter_lock:
        _unmapped_counter[(system, label)] += 1
    log.debug("unmapped %s label %r", system, label)


def unmapped_counts() -> dict[tuple[str, str], int]:
    """(label system, raw label) -> times seen unmapped in this process."""
    with _counter_lock:
        return dict(_unmapped_counter)


def reset_unmapped_counts() -> None:
    """Forget the unmapped-label counts (tests, or between runs of a long-lived process)."""
    with _counter_lock:
        _unmapped_counter.clear()


def split_report(report: str | None) -> list[str]:
    """The statements of a MIMIC report string as written by the MIMIC reader."""
    if not report:
        return []
    return [s.strip() for s in report.split(MIMIC_SEPARATOR.strip()) if s.strip()]


def _harmonize_codes(system: str, labels: Mapping[str, float], out: Harmonized) -> None:
    if system == "scp":
        table = scp_table()
        for code, likelihood in labels.items():
            ids = table.get(str(code).strip())
            if ids is None:
                _note_unmapped(system, str(code), out)
                continue
            for cid in ids:
                out.add(cid, _scp_certainty(likelihood))
    elif system == "snomed":
        table = snomed_table()
        for code in labels:
            ids = table.get(str(code).strip())
            if ids is None and not is_code(code):
                ids = tuple(map_text_label(str(code)))  # a text label where a code belongs
            if not ids:
                _note_unmapped(system, str(code), out)
                continue
            for cid in ids:
                out.add(cid, 1.0)
    else:  # icbeb
        table = icbeb_table()
        for label in labels:
            ids = table.get(str(label).strip().casefold())
            if ids is None:
                _note_unmapped(system, str(label), out)
                continue
            for cid in ids:
                out.add(cid, 1.0)


def _harmonize_statements(statements: Iterable[str], out: Harmonized) -> None:
    from esi.conditions.mimic_rules import map_statement

    previous: str | None = None
    for statement in statements:
        mapping = map_statement(statement)
        if mapping.non_diagnostic == "continuation" and previous is not None:
            # "WITH RAPID VENTRICULAR RESPONSE" continues the statement before it: read them together
            joined = map_statement(f"{previous} {statement}")
            if joined.conditions:
                mapping = joined
        previous = statement
        for cid, certainty in mapping.conditions.items():
            out.add(cid, certainty)
        if mapping.conditions:
            continue
        if mapping.non_diagnostic:
            out.non_diagnostic.append(statement)
        else:
            _note_unmapped("mimic", statement, out)


def harmonize(label_system: str, labels: Mapping[str, float] | None, report: str | None = None) -> Harmonized:
    """Map one record's raw labels (for MIMIC: its report statements) to condition ids with certainties."""
    system = (label_system or "none").strip().lower()
    if system not in LABEL_SYSTEMS:
        raise ConfigError(f"unknown label system {label_system!r}; "
                          f"fix: use one of {', '.join(LABEL_SYSTEMS)}")
    out = Harmonized()
    labels = labels or {}
    if system == "none":
        return out
    if system == "text":
        for statement in labels:
            mapped = map_text_label(str(statement))
            if not mapped:
                _note_unmapped(system, str(statement), out)
            for cid, certainty in mapped.items():
                out.add(cid, certainty)
        return out
    if system == "mimic":
        statements = [str(s) for s in labels] if labels else split_report(report)
        _harmonize_statements(statements, out)
        return out
    _harmonize_codes(system, labels, out)
    return out
