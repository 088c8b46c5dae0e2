"""What every reader shares: record references, WFDB loading with unit and lead checks, header comments."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.record import EcgRecord, reorder_leads
from esi.errors import DataError, DatasetNotFoundError, RecordReadError

log = logging.getLogger(__name__)

# Bytes per sample of the WFDB storage formats ESI reads; used to spot truncated signal files early.
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
                     "310": 4 / 3, "311": 4 / 3}
_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nu": None, "": None}


@dataclass
class RecordRef:
    """A cheap pointer to one record: enough for a worker process to read it. ``meta`` feeds EcgRecord fields."""

    record_id: str
    path: str  # WFDB record path without extension (or the .mat path for ICBEB's original form)
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


def require_dir(root: str | Path, what: str) -> Path:
    """Return ``root`` as a Path, or raise DatasetNotFoundError naming it."""
    path = Path(root)
    if not path.is_dir():
        raise DatasetNotFoundError(f"{what} root {path} does not exist or is not a directory; "
                                   "pass the folder that holds the dataset with --root")
    return path


def parse_comments(comments: list[str]) -> dict[str, str]:
    """Header comments such as '#Age: 74', '# Patient ID: 48705', '# sex: female' -> lower-case keys."""
    out: dict[str, str] = {}
    for line in comments:
        match = re.match(r"\s*#?\s*([A-Za-z][A-Za-z _/-]*?)\s*:\s*(.*)$", line)
        if match:
            out[match.group(1).strip().lower()] = match.group(2).strip()
    return out


def _check_signal_files(record_path: str, header: Any) -> None:
    """Compare each signal file's size with what the header promises, so truncation gets a clear message."""
    base = Path(record_path).parent
    expected: dict[str, float] = {}
    for fname, fmt in zip(header.file_name or [], header.fmt or [], strict=False):
        if fname.endswith(".mat"):
            continue  # MATLAB v4 containers carry a header of their own; wfdb checks those
        if fmt not in _BYTES_PER_SAMPLE:
            raise RecordReadError(f"unsupported WFDB signal format {fmt!r}", path=str(base / fname),
                                  field="fmt", fix="convert the record to format 16 or 212")
        expected[fname] = expected.get(fname, 0.0) + _BYTES_PER_SAMPLE[fmt] * (header.sig_len or 0)
    for fname, nbytes in expected.items():
        fpath = base / fname
        if not fpath.exists():
            raise RecordReadError("signal file is missing", path=str(fpath),
                                  fix="copy the .dat file next to its .hea header")
        size = fpath.stat().st_size
        if size < int(nbytes):
            raise RecordReadError(f"signal file is truncated: {size} bytes, the header promises {int(nbytes)}",
                                  path=str(fpath), fix="re-download or re-export the record")


def _fast_format16(record_path: str, hea: Path) -> tuple[np.ndarray, float, list[str], list[str], list[str]] | None:
    """Read the common case (one format-16 .dat, no skew/offset, single segment) without wfdb's pandas-based
    header parser, which costs ~20 ms a record. Returns None for anything else: wfdb handles those."""
    lines = [ln.strip() for ln in hea.read_text(errors="replace").splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        return None
    head = body[0].split()
    if "/" in head[0] or len(head) < 4:
        return None  # multi-segment record, or no fs / length given
    try:
        nsig, fs, nsamp = int(head[1]), float(head[2].split("/")[0].split("(")[0]), int(head[3])
    except ValueError:
        return None
    sig_lines = [ln.split() for ln in body[1:1 + nsig]]
    if nsig == 0 or len(sig_lines) != nsig or any(len(f) < 3 for f in sig_lines):
        return None
    files = {f[0] for f in sig_lines}
    if len(files) != 1 or any(f[1] != "16" for f in sig_lines):
        return None
    gains, baselines, units, names = [], [], [], []
    for f in sig_lines:
        m = re.fullmatch(r"([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?", f[2])
        if not m:
            return None
        gain = float(m.group(1))
        adczero = int(f[4]) if len(f) > 4 and f[4].lstrip("-").isdigit() else 0
        gains.append(gain if gain != 0 else 200.0)  # WFDB: a zero gain means the default 200 adu/unit
        baselines.append(int(m.group(2)) if m.group(2) is not None else adczero)
        units.append(m.group(3) or "mV")
        names.append(" ".join(f[8:]) if len(f) > 8 else f"sig{len(names)}")
    dat = Path(record_path).parent / next(iter(files))
    if not dat.exists():
        raise RecordReadError("signal file is missing", path=str(dat), fix="copy the .dat file next to its .hea header")
    size = dat.stat().st_size
    if size < 2 * nsig * nsamp:
        raise RecordReadError(f"signal file is truncated: {size} bytes, the header promises {2 * nsig * nsamp}",
                              path=str(dat), fix="re-download or re-export the record")
    digital = np.fromfile(dat, dtype="<i2", count=nsig * nsamp).reshape(nsamp, nsig).T
    signal = (digital.astype(np.float64) - np.asarray(baselines, float)[:, None]) / np.asarray(gains)[:, None]
    signal[digital == -32768] = np.nan  # WFDB's missing-sample value for format 16
    return signal, fs, comments, names, units


def load_wfdb(record_path: str) -> tuple[np.ndarray, float, list[str], list[str]]:
    """Read a WFDB record: (signal (12, n) float32 mV in canonical order, fs, header comments, original names).

    Raises RecordReadError for a missing/truncated/unsupported file and DataError for wrong leads or units.
    """
    hea = Path(record_path + ".hea")
    if not hea.exists():
        raise RecordReadError("header file is missing", path=str(hea), fix="check the path or the RECORDS list")
    fast = _fast_format16(record_path, hea)
    if fast is not None:
        signal, fs, comments, names, units = fast
    else:
        signal, fs, comments, names, units = _load_with_wfdb(record_path, hea)
    for i, unit in enumerate(units):
        scale = _UNIT_SCALE.get((unit or "").strip().lower(), "unknown")
        if scale is None:
            scale = 1.0  # PTB and some exports leave units blank; their ADC gain is per mV by convention
        if scale == "unknown":
            raise DataError(f"unknown unit {unit!r} for lead {names[i] if i < len(names) else i}",
                            path=str(hea), field="units", fix="use mV, uV or V in the header")
        signal[i] *= scale
    try:
        signal = reorder_leads(signal, names, path=str(hea))
    except DataError as exc:
        raise RecordReadError(str(exc)) from exc
    return signal.astype(np.float32), fs, comments, names


def _load_with_wfdb(record_path: str, hea: Path) -> tuple[np.ndarray, float, list[str], list[str], list[str]]:
    """Every other WFDB layout (formats 212/80/..., .mat containers, multi-file records), through wfdb."""
    import wfdb

    try:
        header = wfdb.rdheader(record_path)
    except Exception as exc:  # wfdb raises bare ValueError/KeyError on malformed headers
        raise RecordReadError(f"unreadable WFDB header ({type(exc).__name__}: {exc})", path=str(hea)) from exc
    _check_signal_files(record_path, header)
    try:
        rec = wfdb.rdrecord(record_path, physical=True)
    except Exception as exc:
        raise RecordReadError(f"unreadable WFDB signal ({type(exc).__name__}: {exc})", path=str(hea)) from exc
    names = list(rec.sig_name or [])
    signal = np.asarray(rec.p_signal, dtype=np.float64).T
    units = list(rec.units or ["mV"] * len(names))
    return signal, float(rec.fs), list(rec.comments or []), names, units


def build_record(ref: RecordRef, signal: np.ndarray, fs: float, **extra_meta: Any) -> EcgRecord:
    """Assemble an EcgRecord from a reference's metadata and a loaded signal."""
    m = ref.meta
    return EcgRecord(record_id=ref.record_id, signal=signal, fs=fs, source=ref.source,
                     subject_id=m.get("subject_id"), age=m.get("age"), sex=m.get("sex"),
                     labels=dict(m.get("labels") or {}), label_system=m.get("label_system", "none"),
                     report=m.get("report"), fold=m.get("fold"), path=ref.path, meta=dict(extra_meta))


def find_headers(root: Path) -> list[Path]:
    """All .hea files under ``root``, sorted so record order (and shards) are deterministic."""
    return sorted(root.rglob("*.hea"))
