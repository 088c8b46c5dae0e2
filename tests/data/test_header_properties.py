"""Property tests of the WFDB header parser: any header text gives a WfdbHeader or a RecordReadError that names
the file, never another exception; what it does accept is consistent (positive rate in range, positive
counts, one parsed line per declared signal, no signal file outside the folder)."""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esi.data.readers.header import FS_RANGE, decode_header, parse_header
from esi.errors import RecordReadError

PATH = "/data/rec/x.hea"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# tokens real headers contain, plus the damage seen in the field
_TOKENS = st.sampled_from([
    "x", "x/2", "12", "1", "0", "-3", "500", "500/1000(0)", "abc", "nan", "inf", "-500", "1e9", "5000", "-5000",
    "x.dat", "x.mat", "../y.dat", "/abs/y.dat", "-", "16", "212", "16+24", "16x2", "16:3", "999", "8x", "1000",
    "1000.0(0)/mV", "200/uV", "abc/mV", "1000(x)/mV", "1000/furlong", "nan/mV", "0/mV", "()", "(", "/", "I", "II",
    "aVR", "V6", "#", "# Age: 50", "\u00e9", "\ufffd", "\t",
])
_LINE = st.lists(_TOKENS, min_size=0, max_size=10).map(" ".join)
_HEADER = st.lists(_LINE, min_size=0, max_size=16).map("\n".join)


def _check(text: str) -> None:
    try:
        header = parse_header(text, PATH)
    except RecordReadError as exc:
        assert PATH in str(exc)
        return
    assert FS_RANGE[0] <= header.fs <= FS_RANGE[1] and math.isfinite(header.fs)
    assert header.n_signals > 0 and header.n_samples > 0 and len(header.signals) == header.n_signals
    for s in header.signals:
        name = PurePosixPath(s.file_name)
        assert not name.is_absolute() and ".." not in name.parts and s.file_name != "-"
        assert math.isfinite(s.gain) and s.gain != 0


@SETTINGS
@given(_HEADER)
def test_token_soup_headers(text: str) -> None:
    _check(text)


@SETTINGS
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    _check(text)


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_then_parse(data: bytes) -> None:
    try:
        text, flags = decode_header(data, PATH)
    except RecordReadError as exc:
        assert PATH in str(exc) and b"\x00" in data
        return
    assert "\ufffd" not in text or "\ufffd".encode() in data  # latin-1 fallback never invents U+FFFD
    assert flags in ([], ["header_latin1"])
    _check(text)


@SETTINGS
@given(fs=st.floats(min_value=FS_RANGE[0], max_value=FS_RANGE[1], allow_nan=False),
       nsig=st.integers(1, 15), nsamp=st.integers(1, 10**7),
       gain=st.floats(min_value=0.01, max_value=1e6, allow_nan=False), baseline=st.integers(-2**15, 2**15))
def test_valid_headers_parse_to_their_values(fs: float, nsig: int, nsamp: int, gain: float,
                                             baseline: int) -> None:
    lines = [f"x {nsig} {fs!r} {nsamp}"]
    lines += [f"x.dat 16 {gain!r}({baseline})/mV 16 0 0 0 0 L{i}" for i in range(nsig)]
    header = parse_header("\n".join(lines), PATH)
    assert header.fs == fs and header.n_samples == nsamp and header.n_signals == nsig
    assert all(s.gain == gain and s.baseline == baseline and s.name == f"L{i}"
               for i, s in enumerate(header.signals))


@pytest.mark.parametrize("fs", ["abc", "0", "-250", "nan", "inf", "1e12"])
def test_unparseable_rate_never_defaults(fs: str) -> None:
    with pytest.raises(RecordReadError, match=rf"sampling frequency '{fs}' in {PATH} is not a number of Hz"):
        parse_header(f"x 1 {fs} 100\nx.dat 16 200/mV 16 0 0 0 0 I", PATH)
    forced = parse_header(f"x 1 {fs} 100\nx.dat 16 200/mV 16 0 0 0 0 I", PATH, force_fs=360.0)
    assert forced.fs == 360.0 and "fs_forced" in forced.flags


def test_header_file_reader_on_the_real_records(real_dir: Path) -> None:
    from esi.data.readers.header import load_header

    headers = [load_header(p) for p in sorted(real_dir.rglob("*.hea"))]
    assert len(headers) >= 25 and all(h.n_signals >= 12 and h.fs in (100.0, 400.0, 500.0, 1000.0)
                                      for h in headers)
