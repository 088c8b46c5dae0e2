"""ICBEB / CPSC 2018 in its original form: one .mat per record and REFERENCE.csv with up to three labels.

The original .mat holds a MATLAB struct ``ECG`` with fields ``sex``, ``age`` and ``data`` (12 x n, mV, 500 Hz,
lead order I, II, III, aVR, aVL, aVF, V1-V6). When a WFDB header sits next to the .mat (the Challenge form of the
same records), the signal is read through WFDB instead and REFERENCE.csv still gives the labels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from esi.data.readers.base import RecordRef, build_record, load_wfdb, parse_comments, parse_rate, require_dir
from esi.data.record import LEADS, EcgRecord, checked_age, normalize_age, normalize_sex
from esi.errors import DataError, RecordReadError

FS = 500.0
# REFERENCE.csv codes of the 9 CPSC 2018 classes.
CLASSES = {1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD", 9: "STE"}


EXPECTED = "REFERENCE.csv (Recording,First_label,...) with one row per record, and the .mat files"


def read_reference(path: Path) -> dict[str, dict[str, float] | DataError]:
    """REFERENCE.csv (Recording, First_label, Second_label, Third_label) -> {record: {class name: 1.0}}.

    A row with a label that is not a CPSC class maps to the DataError that says so (a reject row later);
    a file whose first column is not 'Recording' raises at once."""
    labels: dict[str, dict[str, float] | DataError] = {}
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh))
    except (OSError, csv.Error) as exc:
        raise DataError(f"REFERENCE.csv cannot be read ({exc})", path=str(path)) from exc
    header = rows[0] if rows else None
    if not header or header[0].strip().lower() != "recording":
        raise DataError("first column must be 'Recording'", path=str(path), field="Recording",
                        fix="use the REFERENCE.csv of CPSC 2018 (Recording,First_label,Second_label,...)")
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        codes: dict[str, float] = {}
        for cell in row[1:]:
            cell = cell.strip()
            if not cell:
                continue
            if not cell.isdigit() or int(cell) not in CLASSES:
                labels[row[0].strip()] = DataError(f"line {lineno}: label {cell!r} is not a CPSC class 1-9",
                                                   path=str(path), field="First_label",
                                                   fix="correct the label of this row (1-9)")
                break
            codes[CLASSES[int(cell)]] = 1.0
        else:
            labels[row[0].strip()] = codes
    return labels


def list_refs(root: str | Path, *, source: str = "icbeb", rate: str | float | None = None) -> list[RecordRef]:
    """One reference per REFERENCE.csv row."""
    root = require_dir(root, "ICBEB")
    force_fs = parse_rate(rate)
    ref_path = next(iter(sorted(root.rglob("REFERENCE.csv"))), None)
    if ref_path is None:
        raise DataError("REFERENCE.csv not found", path=str(root),
                        fix="point --root at the CPSC 2018 folder that holds REFERENCE.csv and the .mat files")
    refs = []
    mats = {p.stem: p for p in root.rglob("*.mat")}
    for name, labels in read_reference(ref_path).items():
        if isinstance(labels, DataError) or "/" in name or "\\" in name or name in (".", ".."):
            error = labels if isinstance(labels, DataError) else DataError(
                f"Recording {name!r} is not a record name", path=str(ref_path), field="Recording")
            refs.append(RecordRef(record_id=f"{source}/{name}", path=str(ref_path), source=source,
                                  error=str(error)))
            continue
        mat = mats.get(name, ref_path.parent / f"{name}.mat")
        refs.append(RecordRef(record_id=f"{source}/{name}", path=str(mat), source=source,
                              meta={"labels": labels, "label_system": "icbeb", "force_fs": force_fs}))
    return refs


def _load_original_mat(path: Path) -> tuple[np.ndarray, float | None, str | None]:
    from scipy.io import loadmat

    if not path.exists():
        raise RecordReadError("record file is missing", path=str(path),
                              fix="check REFERENCE.csv against the .mat files")
    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:
        raise RecordReadError(f"{path.name} is not a readable MATLAB file ({type(exc).__name__}: {exc})",
                              path=str(path), fix="re-export the record as a MATLAB .mat") from exc
    ecg = mat.get("ECG")
    if ecg is None or not hasattr(ecg, "data"):
        raise RecordReadError("no ECG struct with a 'data' field", path=str(path), field="ECG.data",
                              fix="use the original CPSC 2018 files, or the Challenge form with --source challenge")
    data = np.asarray(ecg.data, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != len(LEADS):
        raise RecordReadError(f"ECG.data has shape {data.shape}, expected (12, n)", path=str(path),
                              field="ECG.data")
    return data, normalize_age(getattr(ecg, "age", None)), normalize_sex(getattr(ecg, "sex", None))


def read(ref: RecordRef) -> EcgRecord:
    """Load one ICBEB record (original .mat, or WFDB when a header is next to it)."""
    path = Path(ref.path)
    force_fs = ref.meta.get("force_fs")
    if path.with_suffix(".hea").exists():
        loaded = load_wfdb(str(path.with_suffix("")), force_fs=force_fs)
        info = parse_comments(loaded.comments)
        age, flags = checked_age(info.get("age"))
        ref.meta.setdefault("age", age)
        ref.meta.setdefault("sex", normalize_sex(info.get("sex")))
        ref.meta["flags"] = [*ref.meta.get("flags", []), *flags]
        return build_record(ref, loaded)
    data, age, sex = _load_original_mat(path)
    age, flags = checked_age(age)
    ref.meta.setdefault("age", age)
    ref.meta.setdefault("sex", sex)
    ref.meta["flags"] = [*ref.meta.get("flags", []), *flags]
    return build_record(ref, data.astype(np.float32), force_fs or FS, lead_names=list(LEADS))
