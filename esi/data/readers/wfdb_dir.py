"""Any folder of WFDB records (a hospital export, PTB, CODE-15 in Challenge 2025 form).

Header comments give what metadata exists: 'Age', 'Sex', 'Patient ID' (CODE-15), 'Dx' (SNOMED CT), and any
other 'key: value' pair is kept as a raw label when it looks like one (e.g. 'Chagas label: True').
"""

from __future__ import annotations

from pathlib import Path

from esi.data.readers.base import (
    RecordRef,
    build_record,
    find_headers,
    load_wfdb,
    parse_comments,
    require_dir,
)
from esi.data.readers.challenge import parse_dx
from esi.data.record import EcgRecord, normalize_age, normalize_sex

_TRUE = {"true", "1", "yes", "positive"}


def _labels_from_comments(info: dict[str, str]) -> tuple[dict[str, float], str]:
    if info.get("dx"):
        return parse_dx(info["dx"]), "snomed"
    labels = {}
    for key, value in info.items():
        if key.endswith(" label"):
            labels[key[: -len(" label")]] = 1.0 if value.strip().lower() in _TRUE else 0.0
    return {k: v for k, v in labels.items() if v > 0}, "none"


def list_refs(root: str | Path, *, source: str | None = None) -> list[RecordRef]:
    """One reference per .hea under ``root`` (multi-segment layouts are not expanded)."""
    root = require_dir(root, "WFDB")
    source = source or root.name
    refs = []
    for hea in find_headers(root):
        lines = hea.read_text(errors="replace").splitlines()
        if not lines or lines[0].startswith("#"):
            continue
        info = parse_comments([ln.lstrip("#") for ln in lines if ln.startswith("#")])
        labels, system = _labels_from_comments(info)
        meta = {"age": normalize_age(info.get("age")), "sex": normalize_sex(info.get("sex")),
                "subject_id": info.get("patient id") or info.get("patient") or None,
                "labels": labels, "label_system": system}
        rel = hea.relative_to(root).with_suffix("")
        refs.append(RecordRef(record_id=f"{source}/{rel.as_posix()}", path=str(hea.with_suffix("")),
                              source=source, meta=meta))
    return refs


def read(ref: RecordRef) -> EcgRecord:
    """Load one WFDB record (extra channels such as Frank leads are dropped by name)."""
    signal, fs, _comments, names = load_wfdb(ref.path)
    return build_record(ref, signal, fs, lead_names=names)
