"""Recording noise per electrode: baseline wander (respiration + drift), EMG and powerline interference."""

from __future__ import annotations

import math

import numpy as np

from esi.data.synthetic.geometry import _combine
from esi.data.synthetic.subject import (
    BASELINE_LOG_SD,
    BASELINE_MV,
    EMG_LOG_SD,
    EMG_MV,
    POWERLINE_LOG_SD,
    POWERLINE_MV,
    Subject,
    realism_profile,
    session_mix,
)


def _session_levels(subject: Subject, rng: np.random.Generator) -> tuple[float, float, float]:
    """Baseline, EMG and powerline levels (mV) of this record: the subject's habits, with the profile's
    ``session_noise`` share of their log-spread redrawn. Whether mains hum is present is redrawn with the same
    share (the room and the electrode contact make it); its frequency stays the subject's (the site's mains)."""
    cal = realism_profile(subject.realism)
    share = cal["session_noise"]
    if share <= 0:  # v1/v2: no extra draws, so their records keep their random streams
        return subject.baseline_mv, subject.emg_mv, subject.powerline_mv

    def mixed(value: float, centre: float, sd: float) -> float:
        return float(math.exp(session_mix(math.log(value), math.log(centre), sd, share, rng)))

    hum_centre = POWERLINE_MV * cal["powerline"]
    hum = subject.powerline_mv > 0
    if rng.random() < share:
        hum = bool(rng.random() < cal["powerline_share"])
    if not hum:
        powerline = 0.0
    elif subject.powerline_mv > 0:
        powerline = mixed(subject.powerline_mv, hum_centre, POWERLINE_LOG_SD)
    else:
        powerline = float(rng.lognormal(math.log(hum_centre), POWERLINE_LOG_SD))
    return (mixed(subject.baseline_mv, BASELINE_MV, BASELINE_LOG_SD), mixed(subject.emg_mv, EMG_MV, EMG_LOG_SD),
            powerline)


def _noise(subject: Subject, rng: np.random.Generator, t: np.ndarray, fs: float) -> np.ndarray:
    """Per-electrode baseline wander (respiration + drift), EMG (high-passed white noise) and powerline,
    (9, n) float32 (noise needs no more precision, and float32 halves the memory traffic)."""
    n = t.size
    level = float(rng.lognormal(0, 0.4))
    baseline_mv, emg_mv, powerline_mv = _session_levels(subject, rng)
    bw = baseline_mv * level * rng.uniform(0.3, 1.0, 9)
    ph = rng.uniform(0, 2 * np.pi, (3, 9))
    f_drift = float(rng.uniform(0.03, 0.1))
    # Each sinusoid as a * sin(wt) + b * cos(wt): one (9, k) x (k, n) mix of a few shared waveforms.
    waves = [np.sin(2 * np.pi * subject.resp_hz * t), np.cos(2 * np.pi * subject.resp_hz * t),
             np.sin(2 * np.pi * f_drift * t), np.cos(2 * np.pi * f_drift * t)]
    weights = [bw * np.cos(ph[0]), bw * np.sin(ph[0]), 0.6 * bw * np.cos(ph[1]), 0.6 * bw * np.sin(ph[1])]
    if powerline_mv > 0:
        pl = powerline_mv * level * rng.uniform(0.5, 1.0, 9)
        waves += [np.sin(2 * np.pi * subject.powerline_hz * t), np.cos(2 * np.pi * subject.powerline_hz * t)]
        weights += [pl * np.cos(ph[2]), pl * np.sin(ph[2])]
    white = rng.standard_normal((9, n + 1), dtype=np.float32)
    emg_level = emg_mv * level * np.array([1.5, 1.5, 1.2, 1, 1, 1, 1, 1, 1], dtype=np.float32)
    out = np.diff(white, axis=1)
    out *= (emg_level / np.float32(math.sqrt(2)))[:, None]
    out += _combine(np.stack(weights, axis=1).astype(np.float32), np.stack(waves).astype(np.float32))
    return out
