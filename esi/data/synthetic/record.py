"""One record: the heart dipole traced beat by beat, projected onto nine electrodes, noise added per
electrode, and the 12 leads formed the way an ECG machine forms them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from esi.data.synthetic.beats import _P, _QRS, _REPOL, _Morph, _render, _Template, _templates
from esi.data.synthetic.conditions import _check_conditions
from esi.data.synthetic.geometry import _combine, _form_leads, _lead_vectors, atrial_electrodes
from esi.data.synthetic.noise import _noise
from esi.data.synthetic.rhythm import _atrial_activity, _Beats, _beats
from esi.data.synthetic.subject import Subject
from esi.errors import DataError


def _lobes(templates: dict[str, _Template], beats: _Beats, morph: _Morph, subject: Subject,
           rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Every lobe of every beat as flat arrays (centre, sigma left, sigma right, plateau, vector (k, 3), is-P),
    with the per-beat QT adapted to the preceding RR (Fridericia), amplitude jitter with respiration and
    PR jitter."""
    qt_ratio = np.clip((beats.rr / 0.8) ** (1 / 3), 0.7, 1.35)
    resp_phase = 2 * np.pi * subject.resp_hz * beats.onset + rng.uniform(0, 2 * np.pi)
    qrs_gain = 1 + 0.04 * np.sin(resp_phase) + 0.02 * rng.normal(size=beats.onset.size)
    t_gain = 1 + 0.03 * rng.normal(size=beats.onset.size)
    pr = morph.pr_s + 0.003 * rng.normal(size=beats.onset.size)
    rot = np.radians(2.5 * np.sin(resp_phase))  # respiration swings the frontal axis a little

    cols: list[list[np.ndarray]] = [[], [], [], [], [], []]
    for kind, tmpl in templates.items():
        sel = beats.kind == kind
        if not np.any(sel) or not tmpl.rows:
            continue
        g, c, sl, sr, pl, vec = tmpl.arrays()
        onset, ratio = beats.onset[sel][:, None], qt_ratio[sel][:, None]
        scaled = (g == _REPOL)[None, :]
        p_grp = (g == _P)[None, :]
        pr_k = pr[sel][:, None] * (0.85 if kind == "A" else 1.0)
        centre = onset + np.where(scaled, c * ratio, c) - np.where(p_grp, pr_k, 0.0)
        sl_b = np.where(scaled, sl * ratio, sl) * np.ones_like(onset)
        sr_b = np.where(scaled, sr * ratio, sr) * np.ones_like(onset)
        gain = np.where(g[None, :] == _QRS, qrs_gain[sel][:, None],
                        np.where(scaled, t_gain[sel][:, None], 1.0))
        cos, sin = np.cos(rot[sel])[:, None], np.sin(rot[sel])[:, None]
        vx, vy, vz = vec[None, :, 0], vec[None, :, 1], vec[None, :, 2]
        vb = np.stack([cos * vx - sin * vy, sin * vx + cos * vy, vz * np.ones_like(cos)], axis=-1)
        vb = vb * gain[..., None]
        cols[0].append(centre.ravel())
        cols[1].append(sl_b.ravel())
        cols[2].append(sr_b.ravel())
        cols[3].append(np.broadcast_to(pl, centre.shape).ravel())
        cols[4].append(vb.reshape(-1, 3))
        cols[5].append(np.broadcast_to(p_grp, centre.shape).ravel())
    return tuple(np.concatenate(cc) for cc in cols)


def generate_record(subject: Subject, conditions: Sequence[str], rng: np.random.Generator, fs: float = 500,
                    duration_s: float = 10.0) -> np.ndarray:
    """One record of ``subject`` showing ``conditions`` (SCP codes): float32 (12, n) in mV, leads in
    :data:`esi.data.record.LEADS` order. Without a rhythm code the rhythm is sinus (SR)."""
    if fs <= 0 or duration_s <= 0:
        raise DataError(f"fs={fs} and duration_s={duration_s} must be positive", field="fs/duration_s")
    conds = _check_conditions(conditions)
    n = int(round(fs * duration_s))
    electrodes, lead_vectors = _lead_vectors(subject, rng)
    templates, morph = _templates(subject, conds, rng, lead_vectors)
    beats = _beats(subject, conds, rng, duration_s)
    *lobes, is_p = _lobes(templates, beats, morph, subject, rng)
    if len(lobes[0]) == 0:
        is_p = np.zeros(0, dtype=bool)
    is_p = np.asarray(is_p, dtype=bool)
    heart = _render(*(x[~is_p] for x in lobes), fs=fs, n=n)  # ventricular: QRS, ST, T, U
    atria = _render(*(x[is_p] for x in lobes), fs=fs, n=n)  # P waves
    t = np.arange(n) / fs
    if not morph.has_p:
        atria += _atrial_activity(subject, conds, rng, t)

    # (9, n) electrode potentials; atrial activity reaches the precordial electrodes with its own gains
    pot = _combine(electrodes, heart.T) + _combine(atrial_electrodes(electrodes, subject), atria.T)
    pot += _noise(subject, rng, t, fs)
    return _form_leads(pot)
