"""The WFDB header parser: header bytes -> :class:`WfdbHeader`, or a RecordReadError that names the file.

One parser for every WFDB-based source, so a malformed header is refused the same way everywhere and the
values that decide what a signal means (sampling frequency, gains, baselines, units, file names) are never
taken from wfdb's silent defaults (250 Hz, 200 adu/mV). Text rules:

* a header with a NUL byte is binary (not a header); an empty or comment-only header is refused;
* bytes that are not UTF-8 are decoded as latin-1 (every byte is a latin-1 character, so nothing becomes
  U+FFFD) and the header is flagged ``header_latin1``;
* a signal file name must lie inside the record's folder: absolute paths, ``..`` and ``-`` (stdin) are refused
  before anything is opened.

See https://physionet.org/physiotools/wag/header-5.htm for the format.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from esi.errors import RecordReadError

# Bytes per sample of the WFDB storage formats ESI reads; used to spot truncated signal files early.
BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
                    "310": 4 / 3, "311": 4 / 3}
UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nu": None, "": None}
FS_RANGE = (1.0, 100_000.0)  # Hz; outside this a header value is a typo, not an ECG
MAX_BYTES = 1 << 20  # a 12-lead header is a few hundred bytes; a megabyte is not a header
DEFAULT_GAIN = 200.0  # WFDB: a missing or zero gain means 200 adu per physical unit (flagged when used)

_FMT = re.compile(r"(\d+)(?:x(\d+))?(?::(-?\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"([^()/]*)(?:\(([^)]*)\))?(?:/(.*))?$")


@dataclass
class SignalSpec:
    """One signal line: file, storage format and the values that turn digital samples into mV."""

    file_name: str
    fmt: str
    samples_per_frame: int
    skew: int
    byte_offset: int
    gain: float
    baseline: int
    units: str
    adc_zero: int
    name: str


@dataclass
class WfdbHeader:
    """A parsed single-segment WFDB header."""

    path: str
    record_name: str
    n_signals: int
    fs: float
    n_samples: int
    signals: list[SignalSpec]
    comments: list[str]
    flags: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(s.file_name for s in self.signals))


def _fail(message: str, path: str, field_name: str | None = None, fix: str | None = None) -> RecordReadError:
    return RecordReadError(message, path=path, field=field_name, fix=fix)


def decode_header(data: bytes, path: str) -> tuple[str, list[str]]:
    """Header bytes -> (text, flags); binary, empty or oversized content raises RecordReadError."""
    if len(data) > MAX_BYTES:
        raise _fail(f"header is {len(data)} bytes, not a WFDB header", path, fix="point at the .hea text file")
    if b"\x00" in data:
        raise _fail("header is binary (NUL bytes), not a WFDB text header", path,
                    fix="restore the .hea text file; a signal file may have been renamed to .hea")
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        return data.decode("latin-1"), ["header_latin1"]


def read_header_bytes(path: str | Path) -> bytes:
    """The bytes of a header file; a dangling link, a folder or an unreadable file raises RecordReadError."""
    try:
        with open(path, "rb") as fh:  # the common case costs one open; the checks run when it fails
            return fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _unreadable(Path(path), exc) from None


def _unreadable(p: Path, exc: OSError) -> RecordReadError:
    """Why a header could not be opened: a dangling link, a folder, missing, or the OS's reason."""
    if p.is_symlink():
        try:
            os.stat(p)
        except FileNotFoundError:
            return _fail(f"header is a dangling symbolic link (to {os.readlink(p)})", str(p),
                         fix="copy the header itself, or fix the link")
        except OSError as err:  # a link loop (ELOOP) and the like
            exc = err
    if p.is_dir():
        return _fail("header is a folder, not a file", str(p), fix="rename the folder; .hea names header files")
    if not p.exists() and not p.is_symlink():
        return _fail("header file is missing", str(p), fix="check the path or the RECORDS list")
    return _fail(f"header cannot be read ({exc.strerror or exc})", str(p),
                 fix="check the file's permissions and links")


def parse_fs(text: str, path: str) -> float:
    """'500', '500/1000(0)' -> 500.0; text, 0, negative, NaN or an absurd value raises RecordReadError."""
    token = text.split("/", 1)[0].split("(", 1)[0]
    fix = "write the rate in Hz in the header, or force it with --rate HZ"
    try:
        fs = float(token)
    except ValueError:
        raise _fail(f"sampling frequency {token!r} in {path} is not a number of Hz", path, "fs", fix) from None
    if not math.isfinite(fs) or not FS_RANGE[0] <= fs <= FS_RANGE[1]:
        raise _fail(f"sampling frequency {token!r} in {path} is not a number of Hz within "
                    f"{FS_RANGE[0]:g}-{FS_RANGE[1]:g}", path, "fs", fix)
    return fs


def _int(token: str, what: str, path: str, default: int | None = None) -> int:
    if token == "" and default is not None:
        return default
    try:
        return int(token)
    except ValueError:
        raise _fail(f"{what} {token!r} in {path} is not an integer", path, what) from None


def _check_file_name(name: str, path: str) -> None:
    if "/" not in name and "\\" not in name and ":" not in name and name not in ("-", ".", ".."):
        return  # a bare file name: in the record's folder by construction (the common case, kept cheap)
    pure = PurePosixPath(name.replace("\\", "/"))
    if name == "-":
        raise _fail("signal file '-' (standard input) is not supported", path, "file_name")
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        raise _fail(f"signal file {name!r} points outside the record's folder; refused, not read", path,
                    "file_name", "keep the signal files next to their header and name them without a path")


def _parse_signal(fields: list[str], index: int, path: str, flags: list[str]) -> SignalSpec:
    if len(fields) < 2:
        raise _fail(f"signal line {index + 1} has {len(fields)} field(s); a signal line needs at least a file "
                    "name and a format", path, "signal line")
    file_name = fields[0]
    _check_file_name(file_name, path)
    m = _FMT.match(fields[1])
    if not m:
        raise _fail(f"signal format {fields[1]!r} of signal {index + 1} in {path} cannot be parsed", path, "fmt")
    fmt = m.group(1)
    if fmt not in BYTES_PER_SAMPLE:
        raise _fail(f"unsupported WFDB signal format {fmt!r}", path, "fmt", "convert the record to format 16 or 212")
    spf, skew, offset = int(m.group(2) or 1), int(m.group(3) or 0), int(m.group(4) or 0)
    name = " ".join(fields[8:]) if len(fields) > 8 else f"sig{index}"
    adc_zero = _int(fields[4], f"ADC zero of lead {name}", path) if len(fields) > 4 else 0
    gain, baseline, units = DEFAULT_GAIN, adc_zero, "mV"
    if len(fields) > 2:
        g = _GAIN.match(fields[2])
        gain_text = g.group(1) if g else fields[2]
        try:
            gain = float(gain_text)
        except ValueError:
            gain = math.nan
        if not g or not math.isfinite(gain):
            raise _fail(f"gain {gain_text!r} of lead {name} in {path} is not a number of adu per unit", path,
                        "gain", "write the ADC gain as a number, e.g. 1000/mV")
        if g.group(2) is not None:
            baseline = _int(g.group(2), f"baseline of lead {name}", path)
        if g.group(3) is not None:
            units = g.group(3)
        if units.strip().lower() not in UNIT_SCALE:
            raise _fail(f"units {units!r} of lead {name} in {path} are not a voltage", path, "units",
                        "use mV, uV or V in the header")
    if gain == 0 or len(fields) <= 2:
        gain = DEFAULT_GAIN
        if "default_gain" not in flags:
            flags.append("default_gain")
    return SignalSpec(file_name, fmt, spf, skew, offset, gain, baseline, units, adc_zero, name)


def parse_header(text: str, path: str, *, flags: list[str] | None = None,
                 force_fs: float | None = None) -> WfdbHeader:
    """Parse WFDB header text (single segment). Raises RecordReadError naming ``path`` for anything malformed.

    ``force_fs`` (the user's --rate) replaces the header's sampling frequency, which then need not parse;
    a parseable header rate that differs is flagged ``fs_forced``."""
    flags = list(flags or [])
    lines = text.splitlines()
    comments = [ln.strip()[1:].strip() for ln in lines if ln.strip().startswith("#")]
    body = [ln.split() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not body:
        what = "comment-only" if comments else "empty"
        raise _fail(f"header is {what}: it has no record line", path,
                    fix="restore the header (RECORD NSIG FS NSAMP, then one line per signal)")
    head = body[0]
    if "/" in head[0]:
        raise _fail("multi-segment records are not supported", path, "record line",
                    fix="convert the record to a single segment (wfdb.rdrecord + wrsamp)")
    if len(head) < 2:
        raise _fail("record line has no number of signals", path, "n_signals")
    nsig = _int(head[1], "number of signals", path)
    if nsig <= 0:
        raise _fail(f"number of signals {nsig} in {path} must be positive", path, "n_signals")
    if force_fs is not None:
        fs = float(force_fs)
        try:
            if len(head) < 3 or parse_fs(head[2], path) != fs:
                flags.append("fs_forced")
        except RecordReadError:
            flags.append("fs_forced")
    elif len(head) < 3:
        raise _fail(f"sampling frequency missing in {path} (WFDB would assume 250 Hz)", path, "fs",
                    "write the rate in Hz in the header, or force it with --rate HZ")
    else:
        fs = parse_fs(head[2], path)
    if len(head) < 4:
        raise _fail(f"sample count missing in {path}", path, "n_samples",
                    "write the number of samples per signal in the record line")
    nsamp = _int(head[3], "sample count", path)
    if nsamp <= 0:
        raise _fail(f"sample count {nsamp} in {path} must be positive", path, "n_samples")
    sig_lines = body[1:1 + nsig]
    if len(sig_lines) < nsig:
        raise _fail(f"header declares {nsig} signals but lists {len(sig_lines)}", path, "n_signals",
                    "restore the missing signal lines or correct the number of signals")
    signals = [_parse_signal(f, i, path, flags) for i, f in enumerate(sig_lines)]
    return WfdbHeader(path, head[0], nsig, fs, nsamp, signals, comments, flags)


def load_header(path: str | Path, *, force_fs: float | None = None) -> WfdbHeader:
    """Read, decode and parse the header file at ``path``."""
    text, flags = decode_header(read_header_bytes(path), str(path))
    return parse_header(text, str(path), flags=flags, force_fs=force_fs)


def header_comments(path: str | Path) -> tuple[list[str], list[str]]:
    """(comment lines without '#', decode flags) of a header, for listers that only need its metadata.

    Raises RecordReadError like :func:`load_header` for a header that cannot be read or decoded."""
    text, flags = decode_header(read_header_bytes(path), str(path))
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("#")], flags
