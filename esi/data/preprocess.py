"""Preprocessing to the store's fixed shape: NaN handling, resampling, filtering, fixed-length windows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

import numpy as np

from esi.data.record import EcgRecord
from esi.errors import ConfigError, RecordReadError


@dataclass(frozen=True)
class PreprocessConfig:
    """How records become fixed-shape windows. Stored in the store header so readers know what they get."""

    fs: int = 500  # target sampling rate (Hz); polyphase resampling from the source rate
    duration_s: float = 10.0  # window length (s); shorter records are zero-padded at the end
    window: Literal["first", "center", "all"] = "first"  # which window(s) of a longer record to keep
    highpass_hz: float | None = 0.5  # baseline-wander removal (zero-phase Butterworth); None to skip
    lowpass_hz: float | None = 100.0  # anti-noise low-pass (capped below Nyquist); None to skip
    filter_order: int = 2  # Butterworth order of each filter (applied forward-backward)
    max_nan_fraction: float = 0.2  # a record with more missing samples than this is rejected
    min_duration_s: float = 2.0  # records shorter than this are rejected rather than padded

    def __post_init__(self) -> None:
        if self.fs <= 0 or self.duration_s <= 0:
            raise ConfigError("preprocess fs and duration_s must be positive")
        if self.window not in ("first", "center", "all"):
            raise ConfigError(f"window must be first, center or all, not {self.window!r}")
        if self.highpass_hz is not None and self.lowpass_hz is not None and self.highpass_hz >= self.lowpass_hz:
            raise ConfigError("highpass_hz must be below lowpass_hz")

    @property
    def n_samples(self) -> int:
        return int(round(self.fs * self.duration_s))

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """Short hash that identifies the preprocessing (for resume checks and caches)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def fill_nans(signal: np.ndarray) -> tuple[np.ndarray, float]:
    """Linearly interpolate missing samples per lead (edges take the nearest value; an all-NaN lead becomes 0).

    Returns the filled signal and the fraction of samples that were missing.
    """
    if np.isfinite(signal.sum()):  # one pass for the common case; a NaN or inf anywhere makes the sum non-finite
        return signal, 0.0
    mask = ~np.isfinite(signal)
    frac = float(mask.mean()) if signal.size else 0.0
    if not mask.any():
        return signal, 0.0
    out = signal.copy()
    x = np.arange(signal.shape[1])
    for lead in np.flatnonzero(mask.any(axis=1)):
        good = ~mask[lead]
        out[lead] = np.interp(x, x[good], signal[lead, good]) if good.any() else 0.0
    return out, frac


def resample(signal: np.ndarray, fs_in: float, fs_out: int) -> np.ndarray:
    """Polyphase resampling along time (anti-aliasing included)."""
    from scipy.signal import resample_poly

    if abs(fs_in - fs_out) < 1e-9:
        return signal
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=1)


@lru_cache(maxsize=64)
def _design(fs: float, highpass_hz: float | None, lowpass_hz: float | None, order: int
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """(sos, steady-state zi) of the band-pass, designed once per setting: the design costs more than
    filtering one record, and every record of a store shares it."""
    from scipy.signal import butter, sosfilt_zi

    nyq = fs / 2.0
    lowpass_hz = None if lowpass_hz is None or lowpass_hz >= 0.95 * nyq else lowpass_hz
    if highpass_hz is None and lowpass_hz is None:
        return None
    if highpass_hz is not None and lowpass_hz is not None:
        sos = butter(order, [highpass_hz, lowpass_hz], btype="bandpass", fs=fs, output="sos")
    elif highpass_hz is not None:
        sos = butter(order, highpass_hz, btype="highpass", fs=fs, output="sos")
    else:
        sos = butter(order, lowpass_hz, btype="lowpass", fs=fs, output="sos")
    zi = sosfilt_zi(sos)
    sos.flags.writeable = zi.flags.writeable = False
    return sos, zi


@lru_cache(maxsize=1)
def _inplace_sosfilt():
    """scipy's in-place sosfilt kernel (what scipy.signal.sosfilt runs after copying its input and zi), or
    None. sosfilt's checks, array-API dispatch and copies cost more than the filtering of a 12-lead record
    (2.7 ms against 1.1 ms for a forward-backward pass over 10 s at 500 Hz, measured here). It is a private
    function: it is used only when it gives sosfilt's result on a probe, so a SciPy that changes it makes
    this fall back to sosfilt, slower but the same."""
    from scipy.signal import sosfilt

    try:
        from scipy.signal._sosfilt import _sosfilt

        sos = np.array([[0.2, 0.3, 0.1, 1.0, -0.5, 0.1], [1.0, -2.0, 1.0, 1.0, -1.9, 0.91]])
        x, zi = np.linspace(-1.0, 2.0, 24).reshape(3, 8), np.linspace(0.1, 0.6, 12).reshape(3, 2, 2)
        want, _ = sosfilt(sos, x, axis=1, zi=zi.transpose(1, 0, 2))
        got = x.copy()
        _sosfilt(sos, got, zi.copy())
        return _sosfilt if np.allclose(got, want, rtol=0, atol=1e-12) else None
    except Exception:  # noqa: BLE001  (any failure of a private API means: do not use it)
        return None


def _sosfiltfilt(sos: np.ndarray, zi: np.ndarray, x: np.ndarray, padlen: int) -> np.ndarray:
    """scipy.signal.sosfiltfilt(sos, x, axis=1, padlen=padlen) (odd extension), with the design's zi reused."""
    from scipy.signal import sosfilt

    # the odd extension, built in float64 (a float32 signal is cast in the same pass, never copied twice)
    n = x.shape[1]
    ext = np.empty((x.shape[0], n + 2 * padlen), dtype=np.result_type(x.dtype, np.float64))
    mid = ext[:, padlen:padlen + n]
    mid[...] = x
    if padlen > 0:
        np.subtract(2 * mid[:, :1], mid[:, padlen:0:-1], out=ext[:, :padlen])
        np.subtract(2 * mid[:, -1:], mid[:, -2:-(padlen + 2):-1], out=ext[:, padlen + n:])
    sos = sos.copy()  # scipy wants a writable buffer; the cached design stays read-only
    kernel = _inplace_sosfilt() if ext.dtype == np.float64 else None
    if kernel is None:
        z = zi[:, None, :]  # (sections, 1, 2): broadcast over leads
        y, _ = sosfilt(sos, ext, axis=1, zi=z * ext[None, :, :1])
        y, _ = sosfilt(sos, y[:, ::-1], axis=1, zi=z * y[None, :, -1:])
    else:  # the same two passes on our own C-ordered buffers: ext forward in place, then one reversed copy
        kernel(sos, ext, np.ascontiguousarray(zi[None, :, :] * ext[:, :1, None]))
        y = np.ascontiguousarray(ext[:, ::-1])
        kernel(sos, y, np.ascontiguousarray(zi[None, :, :] * y[:, :1, None]))
    y = y[:, ::-1]
    return y[:, padlen:-padlen] if padlen > 0 else y


def bandpass(signal: np.ndarray, fs: float, highpass_hz: float | None, lowpass_hz: float | None,
             order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth high-pass and/or low-pass filtering along time."""
    design = _design(float(fs), highpass_hz, lowpass_hz, int(order))
    if design is None:
        return signal
    sos, zi = design
    padlen = min(signal.shape[1] - 1, 3 * (2 * len(sos) + 1) * 10)
    return _sosfiltfilt(sos, zi, signal, max(padlen, 0))


def windows(signal: np.ndarray, n: int, policy: str) -> list[tuple[int, np.ndarray, int]]:
    """Cut fixed-length windows: [(window index, (12, n) array, number of padded samples)]."""
    total = signal.shape[1]
    if total == n:
        return [(0, signal, 0)]
    if total < n:
        out = np.zeros((signal.shape[0], n), dtype=signal.dtype)
        out[:, :total] = signal
        return [(0, out, n - total)]
    if policy == "first":
        return [(0, signal[:, :n], 0)]
    if policy == "center":
        start = (total - n) // 2
        return [(0, signal[:, start:start + n], 0)]
    count = total // n  # 'all': non-overlapping windows; a tail shorter than a window is dropped
    return [(i, signal[:, i * n:(i + 1) * n], 0) for i in range(count)]


def conditioned(record: EcgRecord, config: PreprocessConfig) -> tuple[np.ndarray, float]:
    """(float64 (12, n) signal at ``config.fs``, NaN fraction) of one record: the duration and NaN checks,
    NaN filling, resampling and filtering, before it is cut into windows.

    Raises RecordReadError for records that are too short or mostly missing."""
    if record.duration_s < config.min_duration_s:
        raise RecordReadError(f"record {record.record_id} lasts {record.duration_s:.2f} s, below the "
                              f"{config.min_duration_s} s minimum", path=record.meta.get("file") or record.path,
                              field="sig_len")
    signal, nan_frac = record.signal, 0.0
    if not np.isfinite(signal.sum()):  # NaN or inf somewhere (one pass for the common case)
        signal, nan_frac = fill_nans(signal.astype(np.float64))
    if nan_frac > config.max_nan_fraction:
        raise RecordReadError(f"record {record.record_id}: {nan_frac:.0%} of samples are missing (NaN)",
                              path=record.meta.get("file") or record.path, field="signal",
                              fix=f"raise max_nan_fraction above {config.max_nan_fraction} to keep it")
    if abs(record.fs - config.fs) >= 1e-9:
        signal = resample(signal.astype(np.float64, copy=False), record.fs, config.fs)
    # bandpass computes in float64 (a float32 signal is cast while it is padded); unfiltered, cast here
    signal = bandpass(signal, config.fs, config.highpass_hz, config.lowpass_hz, config.filter_order)
    return signal.astype(np.float64, copy=False), nan_frac


def preprocess_windows(record: EcgRecord, config: PreprocessConfig
                       ) -> tuple[list[tuple[int, np.ndarray, int]], float]:
    """([(window index, float64 (12, n) window, padded samples)], NaN fraction): :func:`preprocess` without
    a record per window, for the converter, which writes each window straight to its shard as float16."""
    signal, nan_frac = conditioned(record, config)
    return windows(signal, config.n_samples, config.window), nan_frac


def window_id(record_id: str, index: int) -> str:
    """The record id of window ``index`` of a record (the first keeps the record's own id)."""
    return record_id if index == 0 else f"{record_id}#w{index}"


def preprocess(record: EcgRecord, config: PreprocessConfig) -> list[EcgRecord]:
    """Turn one record into fixed-shape windows at ``config.fs`` (one or several records).

    Windows beyond the first get record ids suffixed '#w<i>'. Raises RecordReadError for records that are
    too short or mostly missing.
    """
    wins, nan_frac = preprocess_windows(record, config)
    out = []
    for index, win, padded in wins:
        meta = dict(record.meta, original_fs=record.fs, original_n_samples=record.n_samples,
                    nan_fraction=nan_frac, nan_filled=nan_frac > 0, window=index, padded_samples=padded)
        out.append(EcgRecord(record_id=window_id(record.record_id, index), signal=win.astype(np.float32),
                             fs=float(config.fs), source=record.source, subject_id=record.subject_id,
                             age=record.age, sex=record.sex, labels=record.labels,
                             label_system=record.label_system, report=record.report, fold=record.fold,
                             path=record.path, conditions=record.conditions, meta=meta))
    return out


def warm_up(config: PreprocessConfig) -> None:
    """Import scipy.signal, design the filter of ``config`` and probe the in-place kernel now (see
    esi.data.convert.warm_imports: done before forking workers, they inherit all three)."""
    _inplace_sosfilt()
    _design(float(config.fs), config.highpass_hz, config.lowpass_hz, int(config.filter_order))
