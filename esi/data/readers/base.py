"""What every reader shares: record references, WFDB loading with unit and lead checks, header comments."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from esi.data.readers.header import BYTES_PER_SAMPLE, UNIT_SCALE, WfdbHeader, header_comments, load_header
from esi.data.record import EcgRecord, reorder_leads
from esi.errors import DataError, DatasetNotFoundError, RecordReadError

log = logging.getLogger(__name__)


@dataclass
class RecordRef:
    """A cheap pointer to one record: enough for a worker process to read it. ``meta`` feeds EcgRecord fields."""

    record_id: str
    path: str  # WFDB record path without extension (or the .mat path for ICBEB's original form)
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set by a lister that already knows the record is bad: it becomes a reject row


class LoadedSignal(NamedTuple):
    """What :func:`load_wfdb` returns."""

    signal: np.ndarray  # (12, n) float32 mV, canonical lead order
    fs: float
    comments: list[str]
    names: list[str]  # the header's lead names, in file order
    flags: list[str]  # e.g. header_latin1, default_gain, fs_forced
    path: str = ""  # the header file (named in messages about the record)


def require_dir(root: str | Path, what: str) -> Path:
    """Return ``root`` as a Path, or raise DatasetNotFoundError naming it."""
    path = Path(root)
    if not path.is_dir():
        raise DatasetNotFoundError(f"{what} root {path} does not exist or is not a directory; "
                                   "pass the folder that holds the dataset with --root")
    return path


_COMMENT_RE = re.compile(r"\s*#?\s*<?([A-Za-z][A-Za-z _/-]*?)>?\s*:\s*(.*)$")
# A comment key with an empty value that opens a block of free-text statements, one per line (LUDB).
_STATEMENT_BLOCKS = ("diagnoses",)


def parse_comments(comments: list[str]) -> dict[str, str]:
    """Header comments such as '#Age: 74', '# Patient ID: 48705', '#<sex>: F' -> lower-case keys.

    LUDB writes '#<diagnoses>:' followed by one statement per comment line; those lines are kept whole,
    joined by newlines, under 'diagnoses' (their own 'Rhythm: ...' colons are part of the statement).
    """
    out: dict[str, str] = {}
    statements: list[str] | None = None
    for line in comments:
        if statements is not None:
            text = line.strip().lstrip("#").strip()
            if text:
                statements.append(text)
            continue
        match = _COMMENT_RE.match(line)
        if match:
            key, value = match.group(1).strip().lower(), match.group(2).strip()
            if key in _STATEMENT_BLOCKS and not value:
                statements = []
                continue
            out[key] = value
    if statements:
        out["diagnoses"] = "\n".join(statements)
    return out


def _check_mat_v4(path: Path, header: WfdbHeader, n_signals: int, offset: int) -> None:
    """A Challenge-style .mat must be the MATLAB v4 matrix the header describes (signals x samples)."""
    with path.open("rb") as fh:
        head = fh.read(20)
    ok = len(head) == 20
    if ok:
        mopt, rows, cols, imag, namlen = (int(v) for v in np.frombuffer(head, "<i4"))
        ok = (mopt in (0, 10, 20, 30, 40, 50) and imag == 0 and 0 < namlen < 64 and offset == 20 + namlen
              and rows == n_signals and cols == header.n_samples)
    if not ok:
        raise RecordReadError(f"{path.name} is not a MATLAB v4 matrix of {n_signals} x {header.n_samples} "
                              "samples as its header describes", path=str(path), field="file_name",
                              fix="re-export the record; a .mat of the Challenge form is a MATLAB v4 'val' matrix")


def _check_signal_files(base: Path, header: WfdbHeader) -> None:
    """Each signal file exists, is a file, and holds what the header promises (size, MATLAB container)."""
    per_file: dict[str, list] = {}
    for spec in header.signals:
        per_file.setdefault(spec.file_name, []).append(spec)
    for fname, specs in per_file.items():
        fpath = base / fname
        try:
            st = os.stat(fpath)  # one stat: existence, kind and size
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                raise
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            what = "a folder" if st is not None and stat.S_ISDIR(st.st_mode) else "missing"
            raise RecordReadError(f"signal file is {what}", path=str(fpath),
                                  fix="copy the signal file next to its .hea header")
        offset = specs[0].byte_offset
        if fname.lower().endswith(".mat"):
            _check_mat_v4(fpath, header, len(specs), offset)
        nbytes = offset + sum(BYTES_PER_SAMPLE[s.fmt] * s.samples_per_frame for s in specs) * header.n_samples
        size = st.st_size
        if size < int(nbytes):
            raise RecordReadError(f"signal file is truncated: {size} bytes, the header promises {int(nbytes)}",
                                  path=str(fpath), fix="re-download or re-export the record")


def _fast_path(base: Path, header: WfdbHeader) -> np.ndarray | None:
    """Digital samples (nsig, n) of the common layout (one format-16 file, no skew, one sample per frame),
    read with numpy; None for anything else (wfdb reads those)."""
    specs = header.signals
    if len({s.file_name for s in specs}) != 1 or any(
            s.fmt != "16" or s.samples_per_frame != 1 or s.skew or s.byte_offset != specs[0].byte_offset
            for s in specs):
        return None
    nsig, n = header.n_signals, header.n_samples
    raw = np.fromfile(base / specs[0].file_name, dtype="<i2", count=nsig * n, offset=specs[0].byte_offset)
    return raw.reshape(n, nsig).T


def _wfdb_digital(record_path: str, header: WfdbHeader) -> np.ndarray:
    """Digital samples of every other layout (formats 212/80/..., skew, several files), through wfdb."""
    import wfdb

    try:
        rec = wfdb.rdrecord(record_path, physical=False, return_res=32)
    except Exception as exc:  # wfdb raises bare ValueError/IndexError on malformed files
        raise RecordReadError(f"unreadable WFDB signal ({type(exc).__name__}: {exc})",
                              path=str(Path(record_path).parent / header.files[0])) from exc
    digital = np.asarray(rec.d_signal).T
    if digital.shape != (header.n_signals, header.n_samples):
        raise RecordReadError(f"signal has shape {digital.shape}, the header promises "
                              f"({header.n_signals}, {header.n_samples})", path=header.path)
    return digital


def _lead_order(header: WfdbHeader) -> tuple[np.ndarray | None, DataError | None]:
    """(indices of the header's signals in canonical lead order, or the DataError of missing/duplicated leads),
    found from the names alone, so that only the 12 leads are ever scaled."""
    names = [s.name for s in header.signals]
    try:
        return reorder_leads(np.arange(header.n_signals)[:, None], names, path=header.path)[:, 0], None
    except DataError as exc:
        return None, exc


def load_wfdb(record_path: str, *, force_fs: float | None = None) -> LoadedSignal:
    """Read a WFDB record: 12 leads in canonical order, mV, with the header's rate (or ``force_fs``).

    The header is parsed by esi.data.readers.header (never wfdb's defaults); samples come from numpy for
    format 16 and from wfdb otherwise; gains, baselines and units are always the parsed header's. Raises
    RecordReadError naming the file for a missing/truncated/unsupported/malformed file, wrong leads or units.
    """
    header = load_header(record_path + ".hea", force_fs=force_fs)
    base = Path(record_path).parent
    _check_signal_files(base, header)
    order, lead_error = _lead_order(header)
    digital = _fast_path(base, header)
    if digital is None:
        from wfdb.io._signal import _digi_nan

        digital = _wfdb_digital(record_path, header)
        invalid = np.array([_digi_nan(s.fmt) for s in header.signals])[:, None]
    else:
        invalid = None  # format 16: the missing-sample value is -32768, the int16 minimum
    if lead_error is not None:  # reported after the signal checks, whose reasons come first
        raise RecordReadError(str(lead_error)) from lead_error
    specs = [header.signals[i] for i in order]
    digital = digital[order]  # (12, n), contiguous: later passes read it in order
    gains = np.array([s.gain for s in specs])
    baselines = np.array([s.baseline for s in specs], dtype=np.float32)[:, None]
    scale = np.array([UNIT_SCALE[s.units.strip().lower()] or 1.0 for s in specs])
    # float32 in place: (d - baseline) * (unit scale / gain); NaN where WFDB stores its missing-sample value
    signal = digital.astype(np.float32)
    signal -= baselines
    signal *= (scale / gains).astype(np.float32)[:, None]
    if invalid is None:
        missing = digital == -32768 if digital.min() == -32768 else None
    else:
        missing = digital == invalid[order]
    if missing is not None and missing.any():
        signal[missing] = np.nan
    names = [s.name for s in header.signals]
    return LoadedSignal(signal, header.fs, header.comments, names, header.flags, header.path)


def build_record(ref: RecordRef, loaded: LoadedSignal | np.ndarray, fs: float | None = None,
                 **extra_meta: Any) -> EcgRecord:
    """Assemble an EcgRecord from a reference's metadata and a loaded signal (flags of both are kept)."""
    m = ref.meta
    if isinstance(loaded, LoadedSignal):
        signal, fs, flags = loaded.signal, loaded.fs, [*m.get("flags", []), *loaded.flags]
        extra_meta.setdefault("lead_names", loaded.names)
        extra_meta.setdefault("file", loaded.path)
    else:
        signal, flags = loaded, list(m.get("flags", []))
    return EcgRecord(record_id=ref.record_id, signal=signal, fs=float(fs), source=ref.source,
                     subject_id=m.get("subject_id"), age=m.get("age"), sex=m.get("sex"),
                     labels=dict(m.get("labels") or {}), label_system=m.get("label_system", "none"),
                     report=m.get("report"), fold=m.get("fold"), path=ref.path,
                     meta=dict(extra_meta, flags=list(dict.fromkeys(flags))))


def find_headers(root: Path) -> list[Path]:
    """Every path under ``root`` named *.hea (files, folders, dangling links alike: each becomes a record or a
    reject, never a silent drop), sorted so record order (and shards) are deterministic."""
    return sorted(root.rglob("*.hea"))


def header_refs(root: Path, source: str, meta_of: Callable[[dict[str, str]], dict[str, Any]],
                force_fs: float | None = None) -> list[RecordRef]:
    """One reference per header under ``root``; ``meta_of`` turns the parsed comments into record metadata.

    A header whose comments cannot be read gets a reference with ``error`` set (a reject row later)."""
    refs = []
    for hea in find_headers(root):
        rel = hea.relative_to(root).with_suffix("")
        ref = RecordRef(record_id=f"{source}/{rel.as_posix()}", path=str(hea.with_suffix("")), source=source)
        try:
            comments, flags = header_comments(hea)
            ref.meta = meta_of(parse_comments(comments))
            ref.meta["flags"] = [*flags, *ref.meta.get("flags", [])]
        except RecordReadError as exc:
            ref.error = str(exc)
        if force_fs is not None:
            ref.meta["force_fs"] = force_fs
        refs.append(ref)
    return refs


def parse_rate(rate: str | float | None) -> float | None:
    """``--rate``: 'auto'/None -> None (the header's rate), else a forced rate in Hz."""
    if rate is None or str(rate).strip().lower() == "auto":
        return None
    try:
        fs = float(rate)
    except ValueError:
        raise DataError(f"--rate {rate!r} is not a number of Hz", field="rate",
                        fix="pass auto (the header's rate) or the rate in Hz, e.g. --rate 500") from None
    if not fs > 0 or fs != fs or fs > 100_000:
        raise DataError(f"--rate {rate!r} is not a plausible rate", field="rate", fix="pass a rate in Hz")
    return fs
