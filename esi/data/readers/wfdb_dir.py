"""Any folder of WFDB records (a hospital export, PTB, CODE-15 in Challenge 2025 form).

Header comments give what metadata exists: 'Age', 'Sex', 'Patient ID' (CODE-15), 'Dx' (SNOMED CT codes, or
text labels such as 'AF'), '<diagnoses>' (LUDB: free-text statements, label system 'text'), and any
other 'key: value' pair is kept as a raw label when it looks like one (e.g. 'Chagas label: True').
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esi.data.readers.base import RecordRef, build_record, header_refs, load_wfdb, parse_rate, require_dir
from esi.data.readers.challenge import parse_dx
from esi.data.record import EcgRecord, checked_age, normalize_sex

EXPECTED = "*.hea WFDB headers (with their signal files) anywhere below it"
_TRUE = {"true", "1", "yes", "positive"}


def _labels_from_comments(info: dict[str, str]) -> tuple[dict[str, float], str]:
    if info.get("dx"):
        return parse_dx(info["dx"]), "snomed"
    if info.get("diagnoses"):  # free-text statements (LUDB), harmonised with label system 'text'
        return dict.fromkeys(info["diagnoses"].split("\n"), 1.0), "text"
    labels = {}
    for key, value in info.items():
        if key.endswith(" label"):
            labels[key[: -len(" label")]] = 1.0 if value.strip().lower() in _TRUE else 0.0
    return {k: v for k, v in labels.items() if v > 0}, "none"


def _meta(info: dict[str, str]) -> dict[str, Any]:
    labels, system = _labels_from_comments(info)
    age, flags = checked_age(info.get("age"))
    return {"age": age, "sex": normalize_sex(info.get("sex")),
            "subject_id": info.get("patient id") or info.get("patient") or None,
            "labels": labels, "label_system": system, "flags": flags}


def list_refs(root: str | Path, *, source: str | None = None, rate: str | float | None = None
              ) -> list[RecordRef]:
    """One reference per .hea under ``root`` (multi-segment layouts are refused when read)."""
    root = require_dir(root, "WFDB")
    return header_refs(root, source or root.name, _meta, parse_rate(rate))


def read(ref: RecordRef) -> EcgRecord:
    """Load one WFDB record (extra channels such as Frank leads are dropped by name)."""
    return build_record(ref, load_wfdb(ref.path, force_fs=ref.meta.get("force_fs")))
