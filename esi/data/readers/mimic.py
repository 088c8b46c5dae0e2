"""MIMIC-IV-ECG: record_list.csv + machine_measurements.csv (report_0 .. report_17) + WFDB files under files/.

Its leads are stored as I, II, III, aVR, aVF, aVL, V1-V6; the name-based reordering puts aVL before aVF.
A record_list row with a subject_id/study_id that is not a number, or a path outside the root, becomes a
reject row for that record; a machine_measurements row whose study_id is not a number becomes a reject row
of its own (its statements cannot be attached to any record).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from esi.data.readers.base import RecordRef, build_record, load_wfdb, parse_rate, require_dir
from esi.data.record import EcgRecord
from esi.errors import DataError

REPORT_COLUMNS = [f"report_{i}" for i in range(18)]
EXPECTED = "record_list.csv with one row per record, machine_measurements.csv and the WFDB files under files/"


def _read_csv(path: Path, required: tuple[str, ...]):
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name} cannot be parsed as CSV ({exc})", path=str(path),
                        fix="restore the file from the MIMIC-IV-ECG release") from exc
    for col in required:
        if col not in df.columns:
            raise DataError(f"missing required column {col} in {path}", path=str(path), field=col,
                            fix=f"{path.name} needs the columns {', '.join(required)}")
    return df


def _int(text: str, column: str, path: Path, lineno: int) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"line {lineno}: {column} {text!r} is not a number", path=str(path), field=column,
                        fix=f"correct the {column} cell of this row") from None


def list_refs(root: str | Path, *, source: str = "mimic", rate: str | float | None = None) -> list[RecordRef]:
    """One reference per record_list.csv row, with the machine-report statements as labels."""
    root = require_dir(root, "MIMIC-IV-ECG")
    force_fs = parse_rate(rate)
    rl_path, mm_path = root / "record_list.csv", root / "machine_measurements.csv"
    for p in (rl_path, mm_path):
        if not p.is_file():
            raise DataError(f"{p.name} not found", path=str(p),
                            fix="point --root at the MIMIC-IV-ECG folder with record_list.csv, "
                                "machine_measurements.csv and files/")
    records = _read_csv(rl_path, ("subject_id", "study_id", "path"))
    measures = _read_csv(mm_path, ("study_id",))
    report_cols = [c for c in REPORT_COLUMNS if c in measures.columns]
    statements: dict[int, list[str]] = {}
    refs = []
    for lineno, row in enumerate(measures[["study_id", *report_cols]].itertuples(index=False), start=2):
        try:
            study = _int(row[0], "study_id", mm_path, lineno)
        except DataError as exc:
            refs.append(RecordRef(record_id=f"{source}/measurements-line{lineno}", path=str(mm_path),
                                  source=source, error=str(exc)))
            continue
        statements[study] = [t.strip() for t in row[1:] if isinstance(t, str) and t.strip()]
    for lineno, row in enumerate(records.itertuples(index=False), start=2):
        try:
            study = _int(row.study_id, "study_id", rl_path, lineno)
            subject = _int(row.subject_id, "subject_id", rl_path, lineno)
            rel = PurePosixPath(str(row.path).strip())
            if not str(rel) or rel.is_absolute() or ".." in rel.parts:
                raise DataError(f"line {lineno}: path {row.path!r} is not a path inside the root; refused",
                                path=str(rl_path), field="path", fix="paths are relative, like files/p1000/...")
        except DataError as exc:
            refs.append(RecordRef(record_id=f"{source}/{row.study_id or f'line{lineno}'}", path=str(rl_path),
                                  source=source, error=str(exc)))
            continue
        texts = statements.get(study, [])
        meta = {"subject_id": str(subject), "labels": {t: 1.0 for t in texts}, "label_system": "mimic",
                "report": "; ".join(texts) if texts else None, "force_fs": force_fs}
        refs.append(RecordRef(record_id=f"{source}/{study}", path=str(root / rel), source=source, meta=meta))
    return refs


def read(ref: RecordRef) -> EcgRecord:
    """Load one MIMIC-IV-ECG record."""
    return build_record(ref, load_wfdb(ref.path, force_fs=ref.meta.get("force_fs")))
