"""Text labels -> condition ids: the abbreviations and names some headers write where codes belong.

Two places carry text instead of SNOMED CT codes:

- ``#Dx`` lines of the first CPSC 2018 release and of some Challenge exports (``AF``, ``I-AVB``, ``RBBB``,
  ``Normal``, ``SVPB``...), read with label system ``snomed``: a token that is not a code comes here.
- Free-text diagnosis statements, one per comment line (LUDB's ``#<diagnoses>:`` block), label system
  ``text``.

A label is looked up, in order, in ``data/text_label_map.csv`` (the Challenge/CPSC abbreviations and the
statements whose wording the other look-ups misread), in the vocabulary's names, abbreviations and synonyms,
and finally by the MIMIC statement rules (:mod:`esi.conditions.mimic_rules`), which read clinical sentences
such as "Rhythm: Atrial fibrillation." Abbreviations that mean different things in different sources
(``CD``: conduction disturbance in PTB-XL, cardiac dysrhythmia in the vocabulary) stay unmapped rather than
guessed.
"""

from __future__ import annotations

import re
from functools import lru_cache

from esi.conditions.vocabulary import DATA_DIR, load_vocabulary, normalize_text

TEXT_LABEL_MAP = DATA_DIR / "text_label_map.csv"
# Left unmapped on purpose: their meaning depends on the source (see the module docstring).
AMBIGUOUS = frozenset({"cd", "sttc"})
_TRAILING = re.compile(r"[\s.;,]+$")


def _key(label: str) -> str:
    return normalize_text(_TRAILING.sub("", str(label)))


@lru_cache(maxsize=1)
def text_label_table() -> dict[str, tuple[str, ...]]:
    """Case-folded text label -> condition ids, from ``data/text_label_map.csv`` (ids checked)."""
    from esi.conditions.harmonize import read_map

    return {_key(k): v for k, v in read_map(TEXT_LABEL_MAP, "label", fold_case=True).items()}


def map_text_label(label: str) -> dict[str, float]:
    """Condition ids (with certainty) of one text label or statement; empty when nothing matches."""
    key = _key(label)
    if not key or key in AMBIGUOUS:
        return {}
    ids = text_label_table().get(key)
    if ids:
        return dict.fromkeys(ids, 1.0)
    cond = load_vocabulary().lookup(key)
    if cond is not None:
        return {cond.condition_id: 1.0}
    if " " not in key:
        return {}  # a bare unknown abbreviation: the sentence rules below would only guess
    from esi.conditions.mimic_rules import map_statement

    return dict(map_statement(label).conditions)


def is_code(label: str) -> bool:
    """True for a SNOMED CT code (digits) or a vocabulary id (``esi:...``)."""
    text = str(label).strip()
    return text.isdigit() or text.startswith("esi:")
