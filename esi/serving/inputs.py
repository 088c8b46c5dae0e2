"""Request checks and preprocessing shared by the service and ``esi score``.

Every check raises :class:`esi.errors.RequestError` whose message names the field, what was wrong and the
accepted range; the service turns it into HTTP 400 (413 for size limits). Preprocessing calls the training
functions of :mod:`esi.data.preprocess` (resampling, filtering, windowing) with the store's PreprocessConfig,
so a served ECG is prepared exactly as the pretraining data was.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.preprocess import PreprocessConfig, preprocess
from esi.data.record import LEADS, N_LEADS, EcgRecord
from esi.errors import EsiError, RequestError


class PayloadTooLarge(RequestError):
    """A request exceeds a size limit (HTTP 413)."""


@dataclass(frozen=True)
class RequestLimits:
    """What a request may contain (defaults from Settings; see ``from_settings``)."""

    fs_min: float = 50.0
    fs_max: float = 10000.0
    max_records: int = 256
    min_duration_s: float = 2.0
    max_duration_s: float = 120.0
    max_labels: int = 512
    max_bytes: int = 64 * 2**20
    max_abs_mv: float = 100.0  # beyond this the signal is almost surely in uV or ADC units, not mV
    max_text_chars: int = 2000

    @classmethod
    def from_settings(cls, settings: Any = None, preprocess_config: PreprocessConfig | None = None) -> RequestLimits:
        """Limits from the settings (ESI_SERVE_*), with the minimum duration of the preprocessing."""
        from esi.settings import get_settings

        s = settings or get_settings()
        lo, hi = s.serve_fs_range
        return cls(fs_min=float(lo), fs_max=float(hi), max_records=s.serve_max_records,
                   min_duration_s=(preprocess_config or PreprocessConfig()).min_duration_s,
                   max_duration_s=s.serve_max_duration_s, max_labels=s.serve_max_labels,
                   max_bytes=int(s.serve_max_request_mb * 2**20))


def check_fs(fs: Any, limits: RequestLimits) -> float:
    """The sampling rate as a float within the accepted range."""
    try:
        value = float(fs)
    except (TypeError, ValueError):
        raise RequestError(f"field 'fs': {fs!r} is not a number; send the sampling rate in Hz "
                           f"({limits.fs_min:g}-{limits.fs_max:g})") from None
    if not math.isfinite(value) or not limits.fs_min <= value <= limits.fs_max:
        raise RequestError(f"field 'fs': {value:g} Hz is outside the accepted range "
                           f"{limits.fs_min:g}-{limits.fs_max:g} Hz")
    return value


def check_ecg(ecg: Any, fs: Any, limits: RequestLimits) -> tuple[np.ndarray, float]:
    """Check an ECG batch: returns ((n, 12, samples) float64 array in mV, fs).

    A single (12, samples) ECG is accepted as a batch of one.
    """
    fs = check_fs(fs, limits)
    if ecg is None:
        raise RequestError("field 'ecg' is missing; send an array (n, 12, samples) in mV")
    try:
        arr = np.asarray(ecg, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"field 'ecg' is not a numeric array ({exc}); send (n, 12, samples) numbers in mV "
                           "(ragged lists are not accepted: every lead needs the same number of samples)") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.size == 0:
        raise RequestError(f"field 'ecg' is empty (shape {arr.shape}); send at least one ECG (n >= 1, 12 leads, "
                           "samples)")
    if arr.ndim != 3:
        raise RequestError(f"field 'ecg' has shape {arr.shape}; expected (n, 12, samples)")
    n, leads, samples = arr.shape
    if leads != N_LEADS:
        raise RequestError(f"field 'ecg' has {leads} leads (shape {arr.shape}); expected 12 in the order "
                           f"{', '.join(LEADS)}")
    if n > limits.max_records:
        raise PayloadTooLarge(f"field 'ecg' holds {n} ECGs; at most {limits.max_records} per request "
                              "(split the batch, or use 'esi score' for archives)")
    duration = samples / fs
    if duration < limits.min_duration_s or duration > limits.max_duration_s:
        raise RequestError(f"field 'ecg': {samples} samples at {fs:g} Hz last {duration:.2f} s; accepted "
                           f"{limits.min_duration_s:g}-{limits.max_duration_s:g} s (check 'fs')")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=(1, 2)))
        raise RequestError(f"field 'ecg': {int((~finite).sum())} non-finite values (NaN/inf) in ECG(s) "
                           f"{bad[:10].tolist()}; send finite values in mV (interpolate gaps first)")
    peak = float(np.abs(arr).max())
    if peak > limits.max_abs_mv:
        raise RequestError(f"field 'ecg': amplitude {peak:g} exceeds {limits.max_abs_mv:g} mV; send millivolts "
                           "(divide uV by 1000, ADC units by the gain)")
    return arr, fs


def read_npy(path: str | Path, limits: RequestLimits, field: str = "ecg") -> np.ndarray:
    """An uploaded ``.npy`` file (``np.save`` of (n, 12, samples) or (12, samples) numbers in mV) as an array.

    Pickled (object) arrays are refused before anything is unpickled; check_ecg checks the contents.
    """
    path = Path(path)
    check_size(path.stat().st_size, limits, f"field '{field}'")
    how = (f"send the bytes of numpy.save(file, ecg) with ecg of shape (n, 12, samples), float32 or float64, "
           f"in mV, as the multipart file field '{field}'")
    with path.open("rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise RequestError(f"field '{field}' is not a .npy file; {how}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, object dtype (needs pickle), bad header
        raise RequestError(f"field '{field}': unreadable .npy ({exc}); {how}") from None
    if arr.dtype.kind not in "fiu":
        raise RequestError(f"field '{field}': .npy of dtype {arr.dtype} is not real numbers; {how}")
    return arr


def serving_config(config: PreprocessConfig) -> PreprocessConfig:
    """The store's preprocessing with one window per ECG ('all' becomes 'first': one embedding per ECG)."""
    return dataclasses.replace(config, window="first") if config.window == "all" else config


def preprocess_ecg(signal: np.ndarray, fs: float, config: PreprocessConfig, record_id: str = "request") -> np.ndarray:
    """One (12, samples) ECG -> the (12, n_samples) float32 window of training (esi.data.preprocess)."""
    record = EcgRecord(record_id=record_id, signal=np.asarray(signal, dtype=np.float32), fs=float(fs),
                       source="request")
    try:
        return preprocess(record, serving_config(config))[0].signal
    except EsiError as exc:
        raise RequestError(f"field 'ecg' ({record_id}): {exc}") from exc


def preprocess_batch(ecg: np.ndarray, fs: float, config: PreprocessConfig) -> np.ndarray:
    """(n, 12, samples) checked ECGs -> (n, 12, n_samples) float32 windows, as in training."""
    return np.stack([preprocess_ecg(sig, fs, config, record_id=f"ecg[{i}]") for i, sig in enumerate(ecg)])


def check_texts(texts: Any, field: str, limits: RequestLimits, *, allow_empty: bool = False) -> list[str]:
    """A list of non-empty strings, at most ``limits.max_labels`` of them."""
    if texts is None:
        texts = []
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise RequestError(f"field '{field}' must be a list of strings")
    out = [t.strip() for t in texts]
    if not out and not allow_empty:
        raise RequestError(f"field '{field}' is empty; send 1-{limits.max_labels} strings")
    if len(out) > limits.max_labels:
        raise PayloadTooLarge(f"field '{field}' holds {len(out)} entries; at most {limits.max_labels}")
    for i, text in enumerate(out):
        if not text:
            raise RequestError(f"field '{field}'[{i}] is blank; send non-empty text")
        if len(text) > limits.max_text_chars:
            raise RequestError(f"field '{field}'[{i}] has {len(text)} characters; at most {limits.max_text_chars}")
    return out


def check_top_k(top_k: Any, n_labels: int, max_k: int = 1000) -> int:
    """top_k as an int >= 1 (values above the number of labels are capped at it)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer):
        raise RequestError(f"field 'top_k': {top_k!r} is not an integer; accepted 1-{max_k}")
    if not 1 <= int(top_k) <= max_k:
        raise RequestError(f"field 'top_k': {top_k} is outside the accepted range 1-{max_k}")
    return min(int(top_k), max(n_labels, 1))


def check_size(nbytes: int, limits: RequestLimits, what: str = "request") -> None:
    """Reject a payload above the configured limit (ESI_SERVE_MAX_REQUEST_MB)."""
    if nbytes > limits.max_bytes:
        raise PayloadTooLarge(f"{what} is {nbytes / 2**20:.1f} MiB; the limit is {limits.max_bytes / 2**20:g} MiB "
                              "(ESI_SERVE_MAX_REQUEST_MB)")
