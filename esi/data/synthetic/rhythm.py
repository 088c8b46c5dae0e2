"""Rhythm: the ventricular beat times and kinds of one record (sinus with respiratory and low-frequency
variability, atrial fibrillation, flutter, premature beats) and the atrial activity of AF and flutter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from esi.data.synthetic.geometry import _norm
from esi.data.synthetic.subject import Subject


@dataclass
class _Beats:
    onset: np.ndarray   # QRS onset (s)
    kind: np.ndarray    # 'N', 'A', 'V'
    rr: np.ndarray      # preceding RR (s), used for QT adaptation


def _sinus_onsets(subject: Subject, conds: set[str], rng: np.random.Generator, start: float,
                  end: float) -> list[float]:
    """Sinus beats (SR, SBRAD, STACH) with respiratory and low-frequency heart-rate variability."""
    if "SBRAD" in conds:
        hr = subject.traits["sbrad_bpm"] + float(rng.normal(0, 1.5))
        hr = min(hr, 56.0)
    elif "STACH" in conds:
        hr = max(subject.traits["stach_bpm"] + float(rng.normal(0, 3)), 104.0)
    else:
        hr = float(np.clip(subject.hr_bpm + rng.normal(0, 5), 63, 96))
    rr0 = 60.0 / hr
    ph_r, ph_l = rng.uniform(0, 2 * np.pi, 2)
    lf_hz = float(rng.uniform(0.05, 0.12))
    onsets: list[float] = []
    t = start
    while t < end:
        onsets.append(t)
        t += rr0 * (1 + subject.hrv_resp * math.sin(2 * math.pi * subject.resp_hz * t + ph_r)
                    + subject.hrv_lf * math.sin(2 * math.pi * lf_hz * t + ph_l) + 0.006 * rng.normal())
    return onsets


def _rhythm_onsets(subject: Subject, conds: set[str], rng: np.random.Generator, start: float,
                   end: float) -> list[float]:
    """QRS onsets between ``start`` and ``end`` for the record's rhythm, all of them conducted sinus-type."""
    tr = subject.traits
    onsets: list[float] = []
    if "AFIB" in conds:
        mean_rr = 60.0 / (tr["af_rate_bpm"] * float(rng.uniform(0.9, 1.1)))
        t = start
        while t < end:
            onsets.append(t)
            # Irregularly irregular: independent intervals, floored by AV-node refractoriness.
            t += max(0.3, mean_rr * float(rng.lognormal(0, tr["af_irregularity"])))
        return onsets
    if "AFLT" in conds:
        cycle = 60.0 / tr["flutter_bpm"]
        variable = tr["flutter_variable"] < 0.4
        t = start
        while t < end:
            onsets.append(t)
            ratio = int(rng.choice((2, 3, 4), p=[0.5, 0.3, 0.2])) if variable else 2
            t += ratio * cycle
        return onsets
    return _sinus_onsets(subject, conds, rng, start, end)


def _place_ectopics(onset: np.ndarray, kind: np.ndarray, conds: set[str], rng: np.random.Generator,
                    duration_s: float) -> None:
    """Replace a few sinus beats inside the visible window by premature ones (in place)."""
    visible = np.flatnonzero((onset > 0.6) & (onset < duration_s - 1.0))
    for code, k in (("PVC", "V"), ("PAC", "A")):
        if code not in conds or visible.size < 3:
            continue
        count = int(rng.integers(1, 4))
        picks = np.sort(rng.choice(visible[1:-1], size=min(count, visible.size - 2), replace=False))
        for i in picks:
            if kind[i] != "N" or kind[i - 1] != "N" or i + 1 >= len(onset):
                continue
            prev_rr = onset[i] - onset[i - 1]
            if k == "V":
                new = onset[i - 1] + prev_rr * float(rng.uniform(0.55, 0.7))
                # Full compensatory pause: the sinus node is undisturbed, so the next beat keeps its time.
                onset[i], kind[i] = new, "V"
            else:
                new = onset[i - 1] + prev_rr * float(rng.uniform(0.62, 0.78))
                # The premature atrial beat resets the sinus node: the following beats shift earlier.
                shift = onset[i] - new
                onset[i], kind[i] = new, "A"
                onset[i + 1:] -= shift * 0.8


def _beats(subject: Subject, conds: set[str], rng: np.random.Generator, duration_s: float) -> _Beats:
    """Ventricular beats of one record: sinus with respiratory + LF variability, or AF / flutter."""
    start, end = -float(rng.uniform(0.4, 1.6)), duration_s + 0.8
    onsets = _rhythm_onsets(subject, conds, rng, start, end)
    onset = np.array(onsets)
    kind = np.array(["N"] * len(onsets))
    _place_ectopics(onset, kind, conds, rng, duration_s)
    rr = np.diff(onset, prepend=onset[0] - (onset[1] - onset[0] if len(onset) > 1 else 0.8))
    # A beat after a premature one keeps the QT of the undisturbed rhythm: use the median RR for it.
    rr = np.where(kind == "N", np.clip(rr, 0.3, 2.0), np.median(rr))
    return _Beats(onset=onset, kind=kind, rr=rr)


def _atrial_activity(subject: Subject, conds: set[str], rng: np.random.Generator,
                     t: np.ndarray) -> np.ndarray:
    """Fibrillatory f-waves (AFIB) or the flutter sawtooth (AFLT) as a heart-vector component (n, 3)."""
    tr = subject.traits
    n = t.size
    if "AFIB" in conds:
        knots = np.linspace(t[0], t[-1], max(4, int(t[-1] - t[0]) * 2))
        freq = tr["af_f_hz"] + np.interp(t, knots, rng.normal(0, 0.6, knots.size))
        amp = tr["af_f_mv"] * (1 + 0.4 * np.interp(t, knots, rng.uniform(-1, 1, knots.size)))
        phase = 2 * np.pi * np.cumsum(freq) * (t[1] - t[0]) + rng.uniform(0, 2 * np.pi)
        wave = amp * (np.sin(phase) + 0.35 * np.sin(2 * phase + 1.1))
        return wave[:, None] * _norm([-0.15, 0.55, 0.8])[None, :]
    if "AFLT" in conds:
        cycle = 60.0 / tr["flutter_bpm"]
        frac = np.mod(t / cycle + rng.uniform(), 1.0)
        # Slow descent over ~75 % of the cycle, quick return: negative sawtooth in II, III, aVF.
        saw = np.where(frac < 0.75, frac / 0.75, (1 - frac) / 0.25) - 0.5
        k = 9
        saw = np.convolve(np.pad(saw, (k // 2, k // 2), mode="edge"), np.ones(k) / k, mode="valid")[:n]
        return (saw * tr["flutter_mv"])[:, None] * _norm([0.1, 1.0, -0.35])[None, :]
    return np.zeros((n, 3))
