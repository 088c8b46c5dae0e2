"""PTB-XL: ptbxl_database.csv + scp_statements.csv + records500/records100 WFDB files.

The database is read as text and parsed row by row: a malformed cell (scp_codes, ecg_id, patient_id,
strat_fold, age, a likelihood) turns that row into a reject, never the whole archive into an error. A
missing required column is one error that names the column and the file, before any record is read.
"""

from __future__ import annotations

import ast
import logging
import math
import os
from pathlib import Path
from typing import Any

from esi.data.readers.base import RecordRef, build_record, load_wfdb, parse_rate, require_dir
from esi.data.record import EcgRecord, checked_age, normalize_sex
from esi.errors import DataError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
OPTIONAL_COLUMNS = ("age", "sex", "report")
EXPECTED = "ptbxl_database.csv with one row per record, and records500/ or records100/ with the WFDB files"


def parse_scp_codes(text: str, *, path: str, ecg_id: object) -> dict[str, float]:
    """Parse the scp_codes column ("{'NORM': 100.0, 'SR': 0.0}") into {code: likelihood}."""
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise DataError(f"ecg_id {ecg_id}: scp_codes is not a dict literal: {text!r}", path=path,
                        field="scp_codes", fix="write it like {'NORM': 100.0}") from exc
    if not isinstance(codes, dict):
        raise DataError(f"ecg_id {ecg_id}: scp_codes is not a dict: {text!r}", path=path, field="scp_codes",
                        fix="write it like {'NORM': 100.0}")
    out = {}
    for code, value in codes.items():
        try:
            likelihood = float(value)
        except (TypeError, ValueError):
            likelihood = math.nan
        if not math.isfinite(likelihood):
            raise DataError(f"ecg_id {ecg_id}: likelihood {value!r} of {code!r} is not a number", path=path,
                            field="scp_codes", fix="write likelihoods as numbers 0-100")
        out[str(code)] = likelihood
    return out


def _number(text: str, column: str, ecg_id: object, path: str, *, integer: bool) -> float | int | None:
    """A numeric cell (empty -> None); text that is not a number raises DataError naming row and column."""
    text = text.strip()
    if text == "" or text.lower() == "nan":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise DataError(f"ecg_id {ecg_id}: {column} {text!r} is not {kind}", path=path, field=column,
                        fix=f"correct the {column} cell of this row")
    return int(value) if integer else value


def read_database(db_path: Path) -> list[dict[str, str]]:
    """Rows of ptbxl_database.csv as text, with the columns ESI reads (the required ones and age, sex,
    report where present); a missing required column is a DataError naming it."""
    import pandas as pd

    try:
        db = pd.read_csv(db_path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise DataError(f"ptbxl_database.csv cannot be parsed as CSV ({exc})", path=str(db_path),
                        fix="restore the file from the PTB-XL release") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in db.columns]
    if missing:
        raise DataError(f"missing required column(s) {', '.join(missing)} in {db_path}", path=str(db_path),
                        field=missing[0], fix=f"the PTB-XL database has columns {', '.join(REQUIRED_COLUMNS)}")
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in db.columns]
    # column lists zipped into rows: DataFrame.to_dict('records') boxes every cell of every column
    return [dict(zip(columns, row, strict=True)) for row in zip(*(db[c].tolist() for c in columns), strict=True)]


def _row_ref(row: dict[str, str], lineno: int, root: Path, db_path: str, rate: str, source: str
             ) -> RecordRef:
    raw_id = row["ecg_id"].strip()
    try:
        ecg_id = _number(raw_id, "ecg_id", f"(line {lineno})", db_path, integer=True)
        if ecg_id is None:
            raise DataError(f"line {lineno}: ecg_id is empty", path=db_path, field="ecg_id")
        hr, lr = row["filename_hr"].strip(), row["filename_lr"].strip()
        if rate == "500" or (rate == "auto" and os.path.exists(os.path.join(root, hr + ".hea"))):
            rel = hr
        elif rate == "100" or (rate == "auto" and os.path.exists(os.path.join(root, lr + ".hea"))):
            rel = lr
        else:
            rel = hr  # neither present: the read fails with a clear 'header file is missing' and a rejects row
        patient = _number(row["patient_id"], "patient_id", ecg_id, db_path, integer=True)
        age, flags = checked_age(_number(row.get("age", ""), "age", ecg_id, db_path, integer=False))
        fold = _number(row["strat_fold"], "strat_fold", ecg_id, db_path, integer=True)
        meta: dict[str, Any] = {
            "subject_id": None if patient is None else str(patient), "age": age,
            "sex": normalize_sex(row.get("sex") or None),
            "labels": parse_scp_codes(row["scp_codes"], path=db_path, ecg_id=ecg_id),
            "label_system": "scp", "report": row.get("report") or None, "fold": fold, "flags": flags,
        }
        if rate in ("500", "100"):
            meta["force_fs"] = float(rate)
        return RecordRef(record_id=f"{source}/{ecg_id}", path=str(root / rel), source=source, meta=meta)
    except DataError as exc:
        return RecordRef(record_id=f"{source}/{raw_id or f'line{lineno}'}", path=db_path, source=source,
                         error=str(exc))


def list_refs(root: str | Path, *, rate: str = "auto", source: str = "ptbxl") -> list[RecordRef]:
    """One reference per database row. ``rate``: '500', '100' (forces that folder and rate) or 'auto'
    (500 Hz when present, else 100 Hz)."""
    root = require_dir(root, "PTB-XL")
    db_path = root / "ptbxl_database.csv"
    if not db_path.is_file():
        raise DataError("ptbxl_database.csv not found", path=str(db_path),
                        fix="point --root at the PTB-XL folder that holds ptbxl_database.csv")
    rate = str(rate)
    if rate not in ("auto", "500", "100"):
        parse_rate(rate)  # a non-number gets the generic message
        raise DataError(f"--rate {rate} for PTB-XL: the records exist at 500 and 100 Hz", field="rate",
                        fix="use 500, 100 or auto")
    # line numbers as a spreadsheet shows them: the column header is line 1
    return [_row_ref(row, i + 2, root, str(db_path), rate, source)
            for i, row in enumerate(read_database(db_path))]


def read(ref: RecordRef) -> EcgRecord:
    """Load one PTB-XL record."""
    return build_record(ref, load_wfdb(ref.path, force_fs=ref.meta.get("force_fs")))
