"""WFDB uploads (``.hea`` + ``.dat``/``.mat`` files, or a zip of them) -> EcgRecords, inside one folder.

Everything happens inside the request's own folder: upload and zip member names are checked before anything
is written (no absolute paths, no ``..``, no drive letters or backslashes, no symlink members, bounded count
and size), and every signal file a header names must be a regular file inside that folder. Any violation is a
:class:`esi.errors.RequestError` naming the file.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from esi.data.preprocess import PreprocessConfig
from esi.data.record import EcgRecord
from esi.errors import EsiError, RequestError
from esi.serving.inputs import PayloadTooLarge, RequestLimits, check_fs, check_size, preprocess_ecg

SUFFIXES = (".hea", ".dat", ".mat")
MAX_FILES = 2000
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


def check_name(name: str, *, field: str = "files") -> PurePosixPath:
    """A safe relative path for an upload or zip member; RequestError for any path trick."""
    raw = str(name)
    if not raw or "\x00" in raw or "\\" in raw or raw.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", raw):
        raise RequestError(f"field '{field}': file name {raw!r} is absolute or malformed; send plain relative names "
                           "such as A0001.hea")
    path = PurePosixPath(raw)
    parts = [p for p in path.parts if p != "."]
    if not parts or any(p == ".." or not _PART.match(p) for p in parts) or len(parts) > 8:
        raise RequestError(f"field '{field}': file name {raw!r} is not allowed (no '..', letters, digits and "
                           "_ . + - only, at most 8 folders)")
    if path.suffix.lower() not in SUFFIXES + (".zip",):
        raise RequestError(f"field '{field}': {raw!r} is not a WFDB file; accepted: .hea, .dat, .mat or a .zip "
                           "of them")
    return PurePosixPath(*parts)


def _target(dest: Path, rel: PurePosixPath) -> Path:
    target = dest.joinpath(*rel.parts)
    if target.exists() or target.is_symlink():
        raise RequestError(f"field 'files': {rel} is sent twice; send each file once")
    return target


def _copy_capped(src, dst: Path, budget: int, what: str) -> int:
    """Copy a stream, refusing more than ``budget`` bytes (zip members may lie about their size)."""
    written = 0
    with dst.open("xb") as out:
        while block := src.read(1 << 20):
            written += len(block)
            if written > budget:
                raise PayloadTooLarge(f"field 'files': {what} expands beyond the upload limit of "
                                      f"{budget / 2**20:.0f} MiB (ESI_SERVE_MAX_REQUEST_MB)")
            out.write(block)
    return written


def extract_zip(archive: Path, dest: Path, limits: RequestLimits, budget: int | None = None) -> int:
    """Extract a zip of WFDB files into ``dest``; returns bytes written. Symlinks and path tricks are refused."""
    budget = limits.max_bytes if budget is None else budget
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RequestError(f"field 'files': {archive.name} is not a readable zip ({exc})") from None
    total = 0
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise PayloadTooLarge(f"field 'files': the zip holds {len(members)} files; at most {MAX_FILES}")
        for info in members:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise RequestError(f"field 'files': zip member {info.filename!r} is a symbolic link; links are "
                                   "not accepted")
            rel = check_name(info.filename)
            if rel.suffix.lower() == ".zip":
                raise RequestError(f"field 'files': nested zip {info.filename!r} is not accepted")
            target = _target(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src:
                    total += _copy_capped(src, target, budget - total, info.filename)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as exc:  # bad CRC, encrypted, truncated
                raise RequestError(f"field 'files': zip member {info.filename!r} cannot be read ({exc})") from None
    return total


def stage_files(files: Iterable[tuple[str, Path]], dest: Path, limits: RequestLimits) -> Path:
    """Put uploads (name, temp file) into ``dest`` under their checked names; zips are extracted there."""
    dest.mkdir(parents=True, exist_ok=True)
    files = list(files)
    if not files:
        raise RequestError("field 'files' is empty; upload .hea + .dat/.mat files or a .zip of them")
    if len(files) > MAX_FILES:
        raise PayloadTooLarge(f"field 'files': {len(files)} files; at most {MAX_FILES}")
    total = 0
    for name, src in files:
        rel = check_name(name)
        src = Path(src)
        if src.is_symlink() or not src.is_file():
            raise RequestError(f"field 'files': {name!r} is not a regular file")
        total += src.stat().st_size
        check_size(total, limits, "the upload")
        if rel.suffix.lower() == ".zip":
            total += extract_zip(src, dest, limits, budget=limits.max_bytes - total)
            continue
        target = _target(dest, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dest


def _signal_files(hea: Path) -> list[str]:
    """Signal file names a header refers to (multi-segment headers are refused)."""
    try:
        text = hea.read_bytes()[:1 << 20].decode("utf-8", errors="replace")
    except OSError as exc:
        raise RequestError(f"field 'files': {hea.name} cannot be read ({exc})") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise RequestError(f"field 'files': {hea.name} is an empty WFDB header")
    head = lines[0].split()
    if "/" in head[0]:
        raise RequestError(f"field 'files': {hea.name} is a multi-segment header; upload single-segment records")
    try:
        nsig = int(head[1])
    except (IndexError, ValueError):
        raise RequestError(f"field 'files': {hea.name}: the record line has no signal count") from None
    return [ln.split()[0] for ln in lines[1:1 + nsig]]


def check_references(hea: Path, root: Path) -> None:
    """Every signal file of a header is a regular file inside ``root`` (no links, no path tricks)."""
    root = root.resolve()
    for fname in dict.fromkeys(_signal_files(hea)):
        if "/" in fname or "\\" in fname or fname in ("-", "~") or fname.startswith(".."):
            raise RequestError(f"field 'files': {hea.name} names signal file {fname!r}, which is outside the "
                               "upload; a header must name a file next to it")
        path = hea.parent / fname
        if path.is_symlink() or not path.is_file():
            raise RequestError(f"field 'files': {hea.name} names signal file {fname!r}, which was not uploaded; "
                               "send the .dat/.mat file with its header")
        if not path.resolve().is_relative_to(root):
            raise RequestError(f"field 'files': signal file {fname!r} of {hea.name} is outside the upload")


def read_uploaded_records(root: Path) -> list[EcgRecord]:
    """Every WFDB record under ``root`` (sorted by path); RequestError naming the first bad file."""
    from esi.data.readers import wfdb_dir

    headers = sorted(p for p in root.rglob("*.hea") if not p.is_symlink())
    if not headers:
        raise RequestError("field 'files': no .hea header in the upload; send each record's .hea with its "
                           ".dat/.mat")
    records = []
    for hea in headers:
        check_references(hea, root)
    try:
        refs = wfdb_dir.list_refs(root, source="upload")
    except EsiError as exc:
        raise RequestError(f"field 'files': {exc}") from None
    for ref in refs:
        name = Path(ref.path).relative_to(root).as_posix()
        if getattr(ref, "error", None):
            raise RequestError(f"field 'files': {name}: {ref.error}")
        try:
            rec = wfdb_dir.read(ref)
        except EsiError as exc:
            raise RequestError(f"field 'files': record {name} cannot be read: {exc}") from None
        except Exception as exc:  # wfdb raises bare ValueError/IndexError on malformed input
            raise RequestError(f"field 'files': record {name} is malformed ({type(exc).__name__}: {exc})") from None
        rec.record_id = name
        records.append(rec)
    return records


def record_windows(records: list[EcgRecord], config: PreprocessConfig, limits: RequestLimits) -> np.ndarray:
    """Preprocessed (n, 12, n_samples) windows of uploaded records (missing samples handled as in training)."""
    if len(records) > limits.max_records:
        raise PayloadTooLarge(f"field 'files': {len(records)} records; at most {limits.max_records} per request")
    out = []
    for rec in records:
        try:
            check_fs(rec.fs, limits)
        except RequestError as exc:
            raise RequestError(f"field 'files': record {rec.record_id}: {exc}") from None
        if rec.duration_s > limits.max_duration_s:
            raise RequestError(f"field 'files': record {rec.record_id} lasts {rec.duration_s:.1f} s; at most "
                               f"{limits.max_duration_s:g} s")
        out.append(preprocess_ecg(rec.signal, rec.fs, config, record_id=rec.record_id))
    return np.stack(out)
