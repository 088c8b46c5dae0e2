"""PhysioNet Challenge 2020/2021 form: .hea + .mat with '#Age', '#Sex', '#Dx' (SNOMED CT) header comments.

Covers ICBEB/CPSC 2018, Chapman-Shaoxing, Ningbo, Georgia and PTB-XL as the Challenge distributed them.
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
from esi.data.record import EcgRecord, normalize_age, normalize_sex


def parse_dx(text: str | None) -> dict[str, float]:
    """'164889003,59118001' -> {'164889003': 1.0, '59118001': 1.0}."""
    if not text:
        return {}
    return {code.strip(): 1.0 for code in text.split(",") if code.strip() and code.strip().lower() != "unknown"}


def list_refs(root: str | Path, *, source: str | None = None) -> list[RecordRef]:
    """One reference per header under ``root``. Header comments are read here so the manifest has labels."""
    root = require_dir(root, "Challenge-format")
    source = source or root.name
    refs = []
    for hea in find_headers(root):
        comments = parse_comments([ln[1:] for ln in hea.read_text(errors="replace").splitlines()
                                   if ln.startswith("#")])
        meta = {
            "age": normalize_age(comments.get("age")),
            "sex": normalize_sex(comments.get("sex")),
            "labels": parse_dx(comments.get("dx")),
            "label_system": "snomed",
            "subject_id": comments.get("patient id") or None,
        }
        rel = hea.relative_to(root).with_suffix("")
        refs.append(RecordRef(record_id=f"{source}/{rel.as_posix()}", path=str(hea.with_suffix("")),
                              source=source, meta=meta))
    return refs


def read(ref: RecordRef) -> EcgRecord:
    """Load one Challenge-format record."""
    signal, fs, _comments, names = load_wfdb(ref.path)
    return build_record(ref, signal, fs, lead_names=names)
