"""Simple, independent ECG measurements: R peaks, heart rate, RR irregularity, and intervals, axis, ST level
and amplitudes from a median beat.

They are deliberately classic and transparent (band-pass + squared slope + adaptive threshold for R
peaks, spatial velocity for QRS onset/offset, tangent method for the T end), so they can check the synthetic
generator and sanity-check real records without sharing any code with the generator. Signals are (12, n)
in mV in :data:`esi.data.record.LEADS` order, or one lead (n,). Times are returned in ms, amplitudes in mV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esi.data.record import LEADS
from esi.errors import DataError

_LEAD_INDEX = {name.lower(): i for i, name in enumerate(LEADS)}


def _as_2d(signal: np.ndarray, fs: float) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 2 * fs:
        raise DataError(f"signal of shape {np.shape(signal)} is too short or not (leads, samples)",
                        field="signal", fix="pass at least 2 s of (12, n) or (n,) samples")
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x)
    return x


def _lead(lead: str | int, n_leads: int) -> int:
    if isinstance(lead, str):
        if lead.lower() not in _LEAD_INDEX:
            raise DataError(f"unknown lead {lead!r}", field="lead", fix=f"use one of {', '.join(LEADS)}")
        idx = _LEAD_INDEX[lead.lower()]
    else:
        idx = int(lead)
    if n_leads == 1:
        return 0
    if not 0 <= idx < n_leads:
        raise DataError(f"lead index {idx} out of range for {n_leads} leads", field="lead")
    return idx


def _bandpass(x: np.ndarray, fs: float, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    nyq = fs / 2
    if lo and hi and hi < nyq:
        sos = butter(order, [lo / nyq, hi / nyq], btype="band", output="sos")
    elif lo:
        sos = butter(order, lo / nyq, btype="high", output="sos")
    elif hi and hi < nyq:
        sos = butter(order, hi / nyq, btype="low", output="sos")
    else:
        return x
    return sosfiltfilt(sos, x, axis=-1)


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the R peaks (QRS complexes) of one lead (n,) or several leads (k, n).

    5-18 Hz band-pass, squared slope summed over leads, 100 ms moving integration, peaks above an adaptive
    threshold (a fraction of the typical large peak) at least 200 ms apart; each is then placed at the maximum
    spatial magnitude of the 0.5-40 Hz signal within 60 ms.
    """
    from scipy.signal import find_peaks

    x = _as_2d(signal, fs)
    band = _bandpass(x, fs, 5.0, 18.0)
    slope = np.gradient(band, axis=1)
    # Normalise each lead so one noisy or huge lead does not dominate the energy.
    scale = np.percentile(np.abs(slope), 99, axis=1, keepdims=True) + 1e-9
    energy = np.sum(np.square(slope / scale), axis=0)
    win = max(1, int(0.1 * fs))
    energy = np.convolve(energy, np.ones(win) / win, mode="same")
    cand, props = find_peaks(energy, distance=max(1, int(0.2 * fs)))
    if cand.size == 0:
        return cand
    heights = energy[cand]
    threshold = 0.2 * np.percentile(heights, 90)
    peaks = cand[heights > threshold]
    # Within 300 ms, a much smaller second peak is a T wave or an artefact, not a beat.
    kept: list[int] = []
    for p in peaks:
        if kept and p - kept[-1] < 0.3 * fs:
            if energy[p] < 0.4 * energy[kept[-1]]:
                continue
            if energy[kept[-1]] < 0.4 * energy[p]:
                kept[-1] = int(p)
                continue
        kept.append(int(p))
    mag = np.sqrt(np.sum(np.square(_bandpass(x, fs, 0.5, 40.0)), axis=0))
    half = int(0.06 * fs)
    refined = []
    for p in kept:
        lo, hi = max(0, p - half), min(mag.size, p + half + 1)
        refined.append(lo + int(np.argmax(mag[lo:hi])))
    return np.unique(np.array(refined, dtype=np.int64))


def rr_intervals(signal: np.ndarray, fs: float) -> np.ndarray:
    """RR intervals in seconds."""
    return np.diff(detect_r_peaks(signal, fs)) / float(fs)


def heart_rate(signal: np.ndarray, fs: float) -> float:
    """Mean heart rate in beats per minute (60 / mean RR); NaN with fewer than two beats."""
    rr = rr_intervals(signal, fs)
    return float(60.0 / rr.mean()) if rr.size else float("nan")


def rr_irregularity(signal: np.ndarray, fs: float, method: str = "cv") -> float:
    """RR irregularity: 'cv' (std / mean of RR) or 'rmssd' (root mean square of successive RR differences,
    as a fraction of the mean RR). Sinus rhythm is ~0.01-0.06; atrial fibrillation well above 0.1."""
    rr = rr_intervals(signal, fs)
    if rr.size < 3:
        return float("nan")
    if method == "cv":
        return float(rr.std() / rr.mean())
    if method == "rmssd":
        return float(np.sqrt(np.mean(np.square(np.diff(rr)))) / rr.mean())
    raise DataError(f"unknown method {method!r}", field="method", fix="use 'cv' or 'rmssd'")


@dataclass
class MedianBeat:
    """A median beat and its fiducial points (sample indices into ``beat``)."""

    beat: np.ndarray  # (k, w) baseline-corrected median beat in mV
    fs: float
    r: int
    qrs_on: int
    qrs_off: int
    rr_s: float
    n_beats: int
    spread: np.ndarray  # (k, w) median absolute deviation of the beats from the median beat

    def ms(self, samples: float) -> float:
        return float(samples) * 1000.0 / self.fs


def median_beat(signal: np.ndarray, fs: float) -> MedianBeat:
    """Median of the regular beats (premature beats excluded), 0.45 s before to 0.7 s after R, with QRS onset
    and offset from the spatial velocity and the PR-segment level as the zero line."""
    x = _as_2d(signal, fs)
    peaks = detect_r_peaks(x, fs)
    if peaks.size < 3:
        raise DataError(f"only {peaks.size} QRS complexes found; cannot form a median beat", field="signal",
                        fix="check the record is an ECG of a few seconds with visible QRS complexes")
    filt = _bandpass(x, fs, 0.5, 40.0)
    pre, post = int(0.45 * fs), int(0.7 * fs)
    rr = np.diff(peaks) / fs
    med_rr = float(np.median(rr))
    regular = np.concatenate([[True], rr > 0.8 * med_rr])  # drop premature beats (PAC/PVC, short AF cycles)
    ok = (peaks - pre >= 0) & (peaks + post < x.shape[1])
    sel = peaks[ok & regular] if np.sum(ok & regular) >= 3 else peaks[ok]
    if sel.size == 0:
        raise DataError("no complete beat in the record", field="signal")
    idx = sel[:, None] + np.arange(-pre, post)[None, :]
    beats = filt[:, idx]  # (k, beats, w)
    beat = np.median(beats, axis=1)  # (k, w)
    spread = np.median(np.abs(beats - beat[:, None, :]), axis=1)  # beat-to-beat variability (MAD)
    r = pre
    vel = np.sum(np.abs(np.gradient(beat, axis=1)), axis=0)
    peak_v = vel[r - int(0.08 * fs): r + int(0.08 * fs)].max()
    thr = 0.1 * peak_v
    hold = max(2, int(0.012 * fs))
    quiet = np.convolve(vel < thr, np.ones(hold), mode="valid") == hold  # quiet[i]: vel[i:i+hold] all low
    qrs_on = r - int(0.05 * fs)
    for i in range(r, max(hold, r - int(0.16 * fs)), -1):
        if quiet[i - hold]:
            qrs_on = i
            break
    qrs_off = r + int(0.06 * fs)
    for j in range(r, min(quiet.size, r + int(0.22 * fs))):
        if quiet[j]:
            qrs_off = j
            break
    lo = max(0, qrs_on - int(0.025 * fs))
    base = np.median(beat[:, lo: max(lo + 1, qrs_on - int(0.005 * fs))], axis=1, keepdims=True)
    return MedianBeat(beat=beat - base, fs=fs, r=r, qrs_on=qrs_on, qrs_off=qrs_off, rr_s=med_rr,
                      n_beats=int(sel.size), spread=spread)


def qrs_width_ms(signal: np.ndarray, fs: float, lead: str | int | None = None) -> float:
    """QRS duration (ms) of the median beat, from the spatial velocity over all given leads, or over one
    chosen ``lead`` alone."""
    x = _as_2d(signal, fs)
    if lead is None or x.shape[0] == 1:
        mb = median_beat(x, fs)
    else:
        mb = median_beat(x[_lead(lead, x.shape[0])], fs)
    return mb.ms(mb.qrs_off - mb.qrs_on)


def pr_interval_ms(signal: np.ndarray, fs: float) -> float | None:
    """PR interval (ms): P onset to QRS onset on the median beat; None where no P wave is found
    (atrial fibrillation or flutter, junctional rhythm, noise)."""
    mb = median_beat(signal, fs)
    beat, fs_ = mb.beat, mb.fs
    mag = np.sqrt(np.sum(np.square(beat), axis=0))
    start = max(0, mb.qrs_on - int(min(0.42, 0.62 * mb.rr_s) * fs_))
    stop = mb.qrs_on - int(0.04 * fs_)
    if stop - start < int(0.04 * fs_):
        return None
    from scipy.signal import find_peaks

    seg = mag[start:stop]
    # The P wave is the last clear bump before the QRS; an earlier one may be the previous beat's T wave.
    cand, props = find_peaks(seg, prominence=0.02)
    good = cand[seg[cand] > 0.04 * np.sqrt(beat.shape[0]) / 2]
    if good.size == 0:
        return None
    prom = props["prominences"][np.isin(cand, good)]
    p = start + int(good[prom >= 0.5 * prom.max()][-1])
    peak = mag[p]
    # A P wave is time-locked to the QRS: it must stand well above the beat-to-beat variability there
    # (fibrillatory or flutter waves and a wandering preceding T wave are not).
    jitter = float(np.sqrt(np.sum(np.square(mb.spread[:, start:stop]), axis=0)).mean())
    if peak < 4.0 * jitter:
        return None
    # P onset: the last point before the peak below 20 % of the way from the local floor (the lowest point
    # of the 150 ms before it) to the peak. Measured from the floor, not from zero: the spatial magnitude
    # of a real recording never reaches zero (noise, a preceding T wave), and a threshold of 20 % of the peak
    # itself then lies below the whole segment and sends the onset back to the search start (LUDB: PR
    # 250-350 ms where the cardiologists marked ~170).
    lo = max(start, p - int(0.15 * fs_))
    floor = float(mag[lo:p].min()) if p > lo else 0.0
    below = np.flatnonzero(mag[lo:p] < floor + 0.2 * (peak - floor))
    on = lo + int(below[-1]) if below.size else lo
    if on <= start:
        return None
    return mb.ms(mb.qrs_on - on)


def qt_interval_ms(signal: np.ndarray, fs: float) -> float | None:
    """QT interval (ms): QRS onset to T end (tangent at the steepest T down-slope meets the zero line), on
    the lead with the largest T wave; None if no T wave is found."""
    mb = median_beat(signal, fs)
    beat, fs_ = mb.beat, mb.fs
    start = mb.qrs_off + int(0.06 * fs_)
    stop = min(beat.shape[1] - 2, mb.r + int(min(0.65, 0.6 * mb.rr_s) * fs_))
    if stop - start < int(0.08 * fs_):
        return None
    seg = beat[:, start:stop]
    lead = int(np.argmax(np.abs(seg).max(axis=1)))
    y = beat[lead]
    p = start + int(np.argmax(np.abs(y[start:stop])))
    sign = 1.0 if y[p] > 0 else -1.0
    if abs(y[p]) < 0.05:
        return None
    dy = np.gradient(y) * fs_
    end = min(y.size - 1, p + int(0.25 * fs_))
    k = p + int(np.argmax(-sign * dy[p:end]))
    if sign * dy[k] >= 0:
        return None
    t_end = k - y[k] / (dy[k] / fs_)
    return mb.ms(t_end - mb.qrs_on)


def t_amplitude_mv(signal: np.ndarray, fs: float, lead: str | int | None = None) -> float | np.ndarray:
    """Signed T-wave amplitude (mV): the largest deflection between J + 60 ms and 60 % of the RR interval
    after R; negative for an inverted T wave. One lead or (lead=None) every lead."""
    x = _as_2d(signal, fs)
    mb = median_beat(x, fs)
    start = mb.qrs_off + int(0.06 * fs)
    stop = max(start + 2, min(mb.beat.shape[1], mb.r + int(min(0.65, 0.6 * mb.rr_s) * fs)))
    seg = mb.beat[:, start:stop]
    amp = seg[np.arange(seg.shape[0]), np.argmax(np.abs(seg), axis=1)]
    return amp if lead is None else float(amp[_lead(lead, x.shape[0])])


def qrs_axis_deg(signal: np.ndarray, fs: float) -> float:
    """Frontal QRS axis (degrees, -180..180) from the net QRS areas of leads I and aVF (12-lead input)."""
    x = _as_2d(signal, fs)
    if x.shape[0] != 12:
        raise DataError("the QRS axis needs the 12 standard leads", field="signal")
    mb = median_beat(x, fs)
    area = mb.beat[:, mb.qrs_on: mb.qrs_off].sum(axis=1)
    return float(np.degrees(np.arctan2(area[5], area[0])))


def st_level_mv(signal: np.ndarray, fs: float, lead: str | int | None = None) -> float | np.ndarray:
    """ST level (mV) at J + 60 ms relative to the PR segment, for one lead or (lead=None) every lead."""
    x = _as_2d(signal, fs)
    mb = median_beat(x, fs)
    j = mb.qrs_off + int(0.06 * fs)
    half = max(1, int(0.005 * fs))
    levels = mb.beat[:, j - half: j + half + 1].mean(axis=1)
    return levels if lead is None else float(levels[_lead(lead, x.shape[0])])


def _qrs_segment(signal: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    x = _as_2d(signal, fs)
    mb = median_beat(x, fs)
    return mb.beat[:, mb.qrs_on: mb.qrs_off + 1], x.shape[0]


def qrs_amplitude_mv(signal: np.ndarray, fs: float, lead: str | int | None = None) -> float | np.ndarray:
    """Peak-to-peak QRS amplitude (mV) of the median beat, one lead or every lead."""
    seg, k = _qrs_segment(signal, fs)
    ptp = seg.max(axis=1) - seg.min(axis=1)
    return ptp if lead is None else float(ptp[_lead(lead, k)])


def r_amplitude_mv(signal: np.ndarray, fs: float, lead: str | int) -> float:
    """Largest positive QRS deflection (mV) above the PR segment."""
    seg, k = _qrs_segment(signal, fs)
    return float(max(0.0, seg[_lead(lead, k)].max()))


def s_amplitude_mv(signal: np.ndarray, fs: float, lead: str | int) -> float:
    """Depth (mV, positive) of the largest negative QRS deflection below the PR segment."""
    seg, k = _qrs_segment(signal, fs)
    return float(max(0.0, -seg[_lead(lead, k)].min()))


def sokolow_lyon_mv(signal: np.ndarray, fs: float) -> float:
    """Sokolow-Lyon index: S in V1 + the larger R of V5 and V6 (mV); > 3.5 mV suggests LVH."""
    seg, k = _qrs_segment(signal, fs)
    if k != 12:
        raise DataError("Sokolow-Lyon needs the 12 standard leads", field="signal")
    return float(max(0.0, -seg[6].min()) + max(seg[10].max(), seg[11].max(), 0.0))


__all__ = ["MedianBeat", "detect_r_peaks", "heart_rate", "median_beat", "pr_interval_ms",
           "qrs_amplitude_mv", "qrs_axis_deg", "qrs_width_ms", "qt_interval_ms", "r_amplitude_mv",
           "rr_intervals", "rr_irregularity", "s_amplitude_mv", "sokolow_lyon_mv", "st_level_mv",
           "t_amplitude_mv"]
