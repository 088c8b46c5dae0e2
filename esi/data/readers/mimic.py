"""MIMIC-IV-ECG: record_list.csv + machine_measurements.csv (report_0 .. report_17) + WFDB files under files/.

Its leads are stored as I, II, III, aVR, aVF, aVL, V1-V6; the name-based reordering puts aVL before aVF.
"""

from __future__ import annotations

from pathlib import Path

from esi.data.readers.base import RecordRef, build_record, load_wfdb, require_dir
from esi.data.record import EcgRecord
from esi.errors import DataError

REPORT_COLUMNS = [f"report_{i}" for i in range(18)]


def list_refs(root: str | Path, *, source: str = "mimic") -> list[RecordRef]:
    """One reference per record_list.csv row, with the machine-report statements as labels."""
    import pandas as pd

    root = require_dir(root, "MIMIC-IV-ECG")
    rl_path, mm_path = root / "record_list.csv", root / "machine_measurements.csv"
    for p in (rl_path, mm_path):
        if not p.exists():
            raise DataError(f"{p.name} not found", path=str(p),
                            fix="point --root at the MIMIC-IV-ECG folder with record_list.csv, "
                                "machine_measurements.csv and files/")
    records = pd.read_csv(rl_path)
    for col in ("subject_id", "study_id", "path"):
        if col not in records.columns:
            raise DataError(f"missing column {col}", path=str(rl_path), field=col)
    measures = pd.read_csv(mm_path, low_memory=False)
    if "study_id" not in measures.columns:
        raise DataError("missing column study_id", path=str(mm_path), field="study_id")
    report_cols = [c for c in REPORT_COLUMNS if c in measures.columns]
    statements: dict[int, list[str]] = {}
    for row in measures[["study_id", *report_cols]].itertuples(index=False):
        texts = [str(t).strip() for t in row[1:] if isinstance(t, str) and t.strip()]
        statements[int(row[0])] = texts
    refs = []
    for row in records.itertuples(index=False):
        study = int(row.study_id)
        texts = statements.get(study, [])
        meta = {
            "subject_id": str(int(row.subject_id)),
            "labels": {t: 1.0 for t in texts},
            "label_system": "mimic",
            "report": "; ".join(texts) if texts else None,
        }
        refs.append(RecordRef(record_id=f"{source}/{study}", path=str(root / str(row.path)), source=source,
                              meta=meta))
    return refs


def read(ref: RecordRef) -> EcgRecord:
    """Load one MIMIC-IV-ECG record."""
    signal, fs, _comments, names = load_wfdb(ref.path)
    return build_record(ref, signal, fs, lead_names=names)
