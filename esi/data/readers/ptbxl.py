"""PTB-XL: ptbxl_database.csv + scp_statements.csv + records500/records100 WFDB files."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

from esi.data.readers.base import RecordRef, build_record, load_wfdb, require_dir
from esi.data.record import EcgRecord, normalize_age, normalize_sex
from esi.errors import DataError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")


def parse_scp_codes(text: str, *, path: str, ecg_id: object) -> dict[str, float]:
    """Parse the scp_codes column ("{'NORM': 100.0, 'SR': 0.0}") into {code: likelihood}."""
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise DataError(f"ecg_id {ecg_id}: scp_codes is not a dict literal: {text!r}", path=path,
                        field="scp_codes", fix="write it like {'NORM': 100.0}") from exc
    if not isinstance(codes, dict):
        raise DataError(f"ecg_id {ecg_id}: scp_codes is not a dict: {text!r}", path=path, field="scp_codes")
    return {str(k): float(v) for k, v in codes.items()}


def list_refs(root: str | Path, *, rate: str = "auto", source: str = "ptbxl") -> list[RecordRef]:
    """One reference per database row. ``rate``: '500', '100' or 'auto' (500 Hz when present, else 100 Hz)."""
    import pandas as pd

    root = require_dir(root, "PTB-XL")
    db_path = root / "ptbxl_database.csv"
    if not db_path.exists():
        raise DataError("ptbxl_database.csv not found", path=str(db_path),
                        fix="point --root at the PTB-XL folder that holds ptbxl_database.csv")
    if rate not in ("auto", "500", "100"):
        raise DataError(f"unknown rate {rate!r}", field="rate", fix="use 500, 100 or auto")
    db = pd.read_csv(db_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in db.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}", path=str(db_path), field=missing[0])
    refs = []
    for row in db.itertuples(index=False):
        ecg_id = int(row.ecg_id)
        hr, lr = str(row.filename_hr), str(row.filename_lr)
        if rate == "500" or (rate == "auto" and (root / f"{hr}.hea").exists()):
            rel = hr
        elif rate == "100" or (rate == "auto" and (root / f"{lr}.hea").exists()):
            rel = lr
        else:
            rel = hr  # neither present: the read fails with a clear 'header file is missing' and a rejects row
        subject = None if pd.isna(row.patient_id) else str(int(row.patient_id))
        meta = {
            "subject_id": subject,
            "age": normalize_age(row.age),
            "sex": normalize_sex(row.sex),
            "labels": parse_scp_codes(str(row.scp_codes), path=str(db_path), ecg_id=ecg_id),
            "label_system": "scp",
            "report": None if pd.isna(row.report) else str(row.report),
            "fold": None if pd.isna(row.strat_fold) else int(row.strat_fold),
        }
        refs.append(RecordRef(record_id=f"{source}/{ecg_id}", path=str(root / rel), source=source, meta=meta))
    return refs


def read(ref: RecordRef) -> EcgRecord:
    """Load one PTB-XL record."""
    signal, fs, _comments, names = load_wfdb(ref.path)
    return build_record(ref, signal, fs, lead_names=names)
