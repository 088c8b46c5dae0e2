"""PhysioNet Challenge 2020/2021 form: .hea + .mat with '#Age', '#Sex', '#Dx' (SNOMED CT) header comments.

Covers ICBEB/CPSC 2018, Chapman-Shaoxing, Ningbo, Georgia and PTB-XL as the Challenge distributed them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esi.data.readers.base import RecordRef, build_record, header_refs, load_wfdb, parse_rate, require_dir
from esi.data.record import EcgRecord, checked_age, normalize_sex

EXPECTED = "*.hea WFDB headers (with .mat or .dat signal files) anywhere below it"


def parse_dx(text: str | None) -> dict[str, float]:
    """'164889003,59118001' -> {'164889003': 1.0, '59118001': 1.0}."""
    if not text:
        return {}
    return {code.strip(): 1.0 for code in text.split(",") if code.strip() and code.strip().lower() != "unknown"}


def _meta(comments: dict[str, str]) -> dict[str, Any]:
    age, flags = checked_age(comments.get("age"))
    return {"age": age, "sex": normalize_sex(comments.get("sex")), "labels": parse_dx(comments.get("dx")),
            "label_system": "snomed", "subject_id": comments.get("patient id") or None, "flags": flags}


def list_refs(root: str | Path, *, source: str | None = None, rate: str | float | None = None
              ) -> list[RecordRef]:
    """One reference per header under ``root``. Header comments are read here so the manifest has labels."""
    root = require_dir(root, "Challenge-format")
    return header_refs(root, source or root.name, _meta, parse_rate(rate))


def read(ref: RecordRef) -> EcgRecord:
    """Load one Challenge-format record."""
    return build_record(ref, load_wfdb(ref.path, force_fs=ref.meta.get("force_fs")))
