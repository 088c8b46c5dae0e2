"""ICBEB / CPSC 2018 in its original form: one .mat per record and REFERENCE.csv with up to three labels.

The original .mat holds a MATLAB struct ``ECG`` with fields ``sex``, ``age`` and ``data`` (12 x n, mV, 500 Hz,
lead order I, II, III, aVR, aVL, aVF, V1-V6). When a WFDB header sits next to the .mat (the Challenge form of the
same records), the signal is read through WFDB instead and REFERENCE.csv still gives the labels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from esi.data.readers.base import RecordRef, build_record, load_wfdb, require_dir
from esi.data.record import LEADS, EcgRecord, normalize_age, normalize_sex
from esi.errors import DataError, RecordReadError

FS = 500.0
# REFERENCE.csv codes of the 9 CPSC 2018 classes.
CLASSES = {1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD", 9: "STE"}


def read_reference(path: Path) -> dict[str, dict[str, float]]:
    """REFERENCE.csv (Recording, First_label, Second_label, Third_label) -> {record: {class name: 1.0}}."""
    labels: dict[str, dict[str, float]] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[0].strip().lower() != "recording":
            raise DataError("first column must be 'Recording'", path=str(path), field="Recording",
                            fix="use the REFERENCE.csv of CPSC 2018 (Recording,First_label,Second_label,...)")
        for lineno, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            codes = {}
            for cell in row[1:]:
                cell = cell.strip()
                if not cell:
                    continue
                if not cell.isdigit() or int(cell) not in CLASSES:
                    raise DataError(f"line {lineno}: label {cell!r} is not a CPSC class 1-9", path=str(path),
                                    field="First_label")
                codes[CLASSES[int(cell)]] = 1.0
            labels[row[0].strip()] = codes
    return labels


def list_refs(root: str | Path, *, source: str = "icbeb") -> list[RecordRef]:
    """One reference per REFERENCE.csv row."""
    root = require_dir(root, "ICBEB")
    ref_path = next(iter(sorted(root.rglob("REFERENCE.csv"))), None)
    if ref_path is None:
        raise DataError("REFERENCE.csv not found", path=str(root),
                        fix="point --root at the CPSC 2018 folder that holds REFERENCE.csv and the .mat files")
    refs = []
    mats = {p.stem: p for p in root.rglob("*.mat")}
    for name, labels in read_reference(ref_path).items():
        mat = mats.get(name, ref_path.parent / f"{name}.mat")
        refs.append(RecordRef(record_id=f"{source}/{name}", path=str(mat), source=source,
                              meta={"labels": labels, "label_system": "icbeb"}))
    return refs


def _load_original_mat(path: Path) -> tuple[np.ndarray, float | None, str | None]:
    from scipy.io import loadmat

    if not path.exists():
        raise RecordReadError("record file is missing", path=str(path),
                              fix="check REFERENCE.csv against the .mat files")
    try:
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:
        raise RecordReadError(f"unreadable .mat ({type(exc).__name__}: {exc})", path=str(path)) from exc
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
    if path.with_suffix(".hea").exists():
        signal, fs, comments, names = load_wfdb(str(path.with_suffix("")))
        from esi.data.readers.base import parse_comments

        info = parse_comments(comments)
        ref.meta.setdefault("age", normalize_age(info.get("age")))
        ref.meta.setdefault("sex", normalize_sex(info.get("sex")))
        return build_record(ref, signal, fs, lead_names=names)
    data, age, sex = _load_original_mat(path)
    ref.meta.setdefault("age", age)
    ref.meta.setdefault("sex", sex)
    return build_record(ref, data.astype(np.float32), FS, lead_names=list(LEADS))
