"""Synthetic 12-lead ECG generator: the embedded default dataset, deterministic from a seed.

Physiology in one paragraph: the heart is a single moving dipole ``H(t)`` (3D: x to the subject's
left, y inferior, z anterior). Each wave of a beat (P, QRS, ST, T, U) is a sum of Gaussian lobes in time,
each lobe a fixed 3D vector, so a beat traces the familiar P, QRS and T loops. The dipole is projected onto
nine electrodes (RA, LA, LL, V1-V6); noise (baseline wander, EMG, powerline) is added per electrode and the
12 leads are formed the way an ECG machine forms them (I = LA - RA, aVR = RA - (LA + LL) / 2,
V1 = V1 - WCT, ...), so Einthoven's and Goldberger's relations hold exactly. Conditions change the lobes
(a late rightward-anterior lobe for RBBB, an ST "injury" plateau for MI, no P lobes and fibrillatory waves
for AF, ...), the rhythm (RR series) or both.

Each subject (:func:`make_subject`) has a stable morphology (axis, amplitudes, intervals, lead gains, lobe
shapes, chronic conditions), so its records resemble each other while heart rate, noise and small
jitters vary.
:func:`generate_dataset` writes the PTB-XL layout that :mod:`esi.data.readers.ptbxl` reads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.record import LEADS
from esi.data.store import atomic_write_bytes, atomic_write_json
from esi.errors import DataError

log = logging.getLogger(__name__)

SCP_STATEMENTS = Path(__file__).with_name("scp_statements.csv")

RHYTHMS = ("SR", "SBRAD", "STACH", "AFIB", "AFLT")
# Every condition the generator can express, with the report phrase used for it.
CONDITIONS: dict[str, str] = {
    "NORM": "normal ecg",
    "SR": "sinus rhythm",
    "SBRAD": "sinus bradycardia",
    "STACH": "sinus tachycardia",
    "AFIB": "atrial fibrillation",
    "AFLT": "atrial flutter",
    "1AVB": "first degree av block",
    "CRBBB": "complete right bundle branch block",
    "CLBBB": "complete left bundle branch block",
    "LAFB": "left anterior fascicular block",
    "PAC": "atrial premature complex(es)",
    "PVC": "ventricular premature complex(es)",
    "LVH": "voltage criteria for left ventricular hypertrophy",
    "AMI": "anterior myocardial infarction",
    "ASMI": "anteroseptal myocardial infarction",
    "IMI": "inferior myocardial infarction",
    "STD_": "st depression",
    "INVT": "inverted t waves",
    "LVOLT": "low qrs voltages",
    "LNGQT": "long qt interval",
}
# PTB-XL statement kinds: rhythm and form statements carry likelihood 0.0 there, diagnostic ones 35-100.
_RHYTHM_CODES = set(RHYTHMS)
_FORM_CODES = {"PAC", "PVC", "STD_", "INVT", "LVOLT"}
_MI_CODES = ("IMI", "ASMI", "AMI")
_FS_OUT = 500

# ---------------------------------------------------------------------------------------------------------
# Geometry: electrode lead vectors in dipole space (x left, y inferior, z anterior).
_LIMB_ELECTRODES = np.array([[-0.5, -1 / (2 * math.sqrt(3)), 0.0],   # RA
                             [0.5, -1 / (2 * math.sqrt(3)), 0.0],    # LA
                             [0.0, 1 / math.sqrt(3), 0.0]])          # LL: LA - RA = x, LL - RA at 60 deg
# Precordial electrodes: angle in the transverse plane from the left (+x) toward anterior (+z), and a gain for
# their proximity to the heart (V2-V4 sit closest).
_PRECORDIAL_ANGLES = np.array([118.0, 96.0, 76.0, 56.0, 32.0, 6.0])
_PRECORDIAL_GAIN = np.array([1.35, 1.9, 2.0, 1.85, 1.55, 1.2])

# Lead formation from 9 electrode potentials (RA, LA, LL, V1..V6) to the 12 standard leads.
_LEAD_MATRIX = np.zeros((12, 9))
_LEAD_MATRIX[0, [0, 1]] = [-1, 1]                   # I = LA - RA
_LEAD_MATRIX[1, [0, 2]] = [-1, 1]                   # II = LL - RA
_LEAD_MATRIX[2, [1, 2]] = [-1, 1]                   # III = LL - LA
_LEAD_MATRIX[3, [0, 1, 2]] = [1, -0.5, -0.5]        # aVR
_LEAD_MATRIX[4, [0, 1, 2]] = [-0.5, 1, -0.5]        # aVL
_LEAD_MATRIX[5, [0, 1, 2]] = [-0.5, -0.5, 1]        # aVF
for _i in range(6):
    _LEAD_MATRIX[6 + _i, [0, 1, 2]] = -1 / 3       # minus Wilson's central terminal
    _LEAD_MATRIX[6 + _i, 3 + _i] = 1.0


def _unit(frontal_deg: float, anterior_deg: float) -> np.ndarray:
    """Unit vector with a frontal-plane angle (0 = left, 90 = inferior) tilted ``anterior_deg`` toward +z."""
    a, b = math.radians(frontal_deg), math.radians(anterior_deg)
    return np.array([math.cos(b) * math.cos(a), math.cos(b) * math.sin(a), math.sin(b)])


def _norm(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subject:
    """A synthetic person: demographics, a stable heart morphology, noise habits and chronic conditions.

    Angles are in degrees, intervals in seconds, amplitudes in mV. ``traits`` holds the stable parameters of
    conditions the subject may show (drawn for everybody so the random stream does not depend on them);
    ``propensity`` the per-record probabilities of transient findings.
    """

    subject_id: int
    age: int
    sex: str
    hr_bpm: float
    axis_deg: float
    qrs_tilt_deg: float
    qrs_amp_mv: float
    qrs_s: float
    pr_s: float
    p_s: float
    qtc_s: float
    p_amp_mv: float
    p_axis_deg: float
    t_amp_mv: float
    t_axis_deg: float
    t_tilt_deg: float
    septal_mv: float
    terminal_mv: float
    limb_gain: float
    precordial_gain: tuple[float, ...]
    precordial_shift_deg: tuple[float, ...]
    shape: tuple[float, ...]
    hrv_resp: float
    hrv_lf: float
    resp_hz: float
    baseline_mv: float
    emg_mv: float
    powerline_mv: float
    powerline_hz: float
    chronic: tuple[str, ...] = ()
    traits: dict[str, float] = field(default_factory=dict)
    propensity: dict[str, float] = field(default_factory=dict)


def make_subject(rng: np.random.Generator, subject_id: int = 0) -> Subject:
    """Draw a subject. Age (18-90) and sex shape the signal: women have lower QRS voltage, a shorter QRS
    and a longer QTc; with age the axis moves left, voltage falls, PR lengthens and HR variability shrinks."""
    age = int(np.clip(round(rng.normal(60, 17)), 18, 90))
    sex = "F" if rng.random() < 0.48 else "M"
    female = sex == "F"
    f_age = (age - 18) / 72.0  # 0 at 18, 1 at 90
    axis = float(np.clip(rng.normal(62 - 0.45 * (age - 18), 22), -25, 100))
    amp = 1.55 * (1.12 - 0.3 * f_age) * (0.84 if female else 1.0) * float(rng.lognormal(0, 0.15))
    qrs_s = float(np.clip(rng.normal(0.092 - (0.006 if female else 0.0), 0.007), 0.074, 0.106))
    pr_s = float(np.clip(rng.normal(0.148 + 0.03 * f_age, 0.016), 0.12, 0.195))
    qtc = float(np.clip(rng.normal(0.400 + (0.014 if female else 0.0) + 0.012 * f_age, 0.014), 0.36, 0.445))
    t_amp = float(np.clip(rng.normal(0.36 if not female else 0.30, 0.08), 0.14, 0.65)) * (1.1 - 0.2 * f_age)
    traits = {
        "sbrad_bpm": float(rng.uniform(42, 55)),
        "stach_bpm": float(rng.uniform(106, 138)),
        "af_rate_bpm": float(rng.uniform(72, 128)),
        "af_irregularity": float(rng.uniform(0.16, 0.28)),
        "af_f_hz": float(rng.uniform(5.0, 8.0)),
        "af_f_mv": float(rng.uniform(0.03, 0.09)),
        "flutter_bpm": float(rng.uniform(260, 330)),
        "flutter_mv": float(rng.uniform(0.12, 0.25)),
        "flutter_variable": float(rng.random()),
        "pr_1avb_s": float(rng.uniform(0.225, 0.32)),
        "rbbb_qrs_s": float(rng.uniform(0.128, 0.155)),
        "rbbb_mv": float(rng.uniform(0.35, 0.6)),
        "lbbb_qrs_s": float(rng.uniform(0.135, 0.17)),
        "lafb_axis_deg": float(rng.uniform(-78, -50)),
        "lvh_sokolow_mv": float(rng.uniform(3.9, 5.2)),
        "lvolt_mv": float(rng.uniform(0.22, 0.40)),
        "mi_q_mv": float(rng.uniform(0.2, 0.4)),
        "mi_st_mv": float(rng.uniform(0.16, 0.32)),
        "std_mv": float(rng.uniform(0.1, 0.22)),
        "invt": float(rng.uniform(0.5, 1.0)),
        "qtc_long_s": float(rng.uniform(0.53, 0.58)),
        "pvc_axis_deg": float(rng.uniform(-180, 180)),
        "pvc_tilt_deg": float(rng.uniform(-60, 60)),
        "pvc_mv": float(rng.uniform(1.6, 2.6)),
        "pvc_qrs_s": float(rng.uniform(0.14, 0.18)),
        "pac_p_axis_deg": float(rng.uniform(-90, 30)),
    }
    # Chronic conditions: independent draws whose odds grow with age; exclusive ones resolved in order.
    chronic: list[str] = []
    u = rng.random(8)
    if u[0] < 0.04 + 0.16 * f_age * (1.2 if not female else 0.8):
        chronic.append("LVH")
    if u[1] < 0.015 + 0.06 * f_age:
        chronic.append("CRBBB")
    elif u[1] < 0.025 + 0.11 * f_age:
        chronic.append("CLBBB")
    if u[2] < 0.015 + 0.07 * f_age and "CLBBB" not in chronic:
        chronic.append("LAFB")
    if u[3] < 0.03 + 0.2 * f_age * (1.2 if not female else 0.7):
        chronic.append(str(rng.choice(_MI_CODES, p=[0.55, 0.3, 0.15])))
    else:
        rng.random()  # keep the stream aligned whether or not a territory was drawn
    if u[4] < 0.015 + 0.07 * f_age:
        chronic.append("1AVB")
    if u[5] < 0.04 and "LVH" not in chronic:
        chronic.append("LVOLT")
    af_prone = u[6] < 0.01 + 0.14 * f_age
    ischaemic = any(c in chronic for c in _MI_CODES)
    propensity = {
        "AFIB": float(rng.uniform(0.35, 1.0)) if af_prone else 0.0,
        "AFLT": 0.5 if u[7] < 0.01 + 0.03 * f_age else 0.0,
        "SBRAD": float(rng.uniform(0.05, 0.5)) if rng.random() < 0.3 else 0.03,
        "STACH": float(rng.uniform(0.05, 0.4)) if rng.random() < 0.2 else 0.03,
        "PAC": 0.3 if rng.random() < 0.1 else 0.02,
        "PVC": 0.35 if rng.random() < 0.12 else 0.025,
        "STD_": (0.35 if "LVH" in chronic else 0.0) + (0.15 if ischaemic else 0.0) + 0.04 + 0.07 * f_age,
        "INVT": (0.4 if ischaemic else 0.0) + 0.03 + 0.05 * f_age,
        "LNGQT": 0.6 if rng.random() < 0.06 else 0.015,
    }
    return Subject(
        subject_id=int(subject_id), age=age, sex=sex,
        hr_bpm=float(np.clip(rng.normal(72 + (3 if female else 0), 8), 62, 95)),
        axis_deg=axis, qrs_tilt_deg=float(rng.normal(-28, 8)), qrs_amp_mv=float(max(amp, 0.7)), qrs_s=qrs_s,
        pr_s=pr_s, p_s=float(np.clip(rng.normal(0.098, 0.01), 0.075, 0.115)), qtc_s=qtc,
        p_amp_mv=float(np.clip(rng.normal(0.16, 0.04), 0.07, 0.28)), p_axis_deg=float(rng.normal(55, 14)),
        t_amp_mv=t_amp, t_axis_deg=float(axis + rng.normal(-5, 16)), t_tilt_deg=float(rng.normal(18, 8)),
        septal_mv=float(rng.uniform(0.1, 0.3)), terminal_mv=float(rng.uniform(0.1, 0.35)),
        limb_gain=float(rng.lognormal(0, 0.1)),
        precordial_gain=tuple(float(g) for g in rng.lognormal(0, 0.12, 6)),
        precordial_shift_deg=tuple(float(s) for s in rng.normal(0, 5, 6)),
        shape=tuple(float(s) for s in rng.normal(0, 1, 12)),
        hrv_resp=float(rng.uniform(0.01, 0.06) * (1.3 - 0.8 * f_age)), hrv_lf=float(rng.uniform(0.01, 0.03)),
        resp_hz=float(rng.uniform(0.18, 0.33)),
        baseline_mv=float(rng.lognormal(math.log(0.08), 0.6)),
        emg_mv=float(rng.lognormal(math.log(0.008), 0.6)),
        powerline_mv=float(rng.lognormal(math.log(0.006), 0.8)) if rng.random() < 0.5 else 0.0,
        powerline_hz=50.0, chronic=tuple(chronic), traits=traits, propensity=propensity,
    )


# ---------------------------------------------------------------------------------------------------------
_ALLOWED_PROB = (100.0, 80.0, 50.0, 35.0)


def _likelihood(code: str, rng: np.random.Generator) -> float:
    """A PTB-XL-like likelihood: rhythm and most form statements 0.0, diagnostic ones mostly 100."""
    if code in _RHYTHM_CODES:
        return 0.0
    if code in _FORM_CODES:
        return 100.0 if code == "PVC" and rng.random() < 0.5 else 0.0
    return float(rng.choice(_ALLOWED_PROB, p=[0.82, 0.09, 0.06, 0.03]))


def generate_labels(rng: np.random.Generator, subject: Subject) -> dict[str, float]:
    """Draw one record's SCP codes -> likelihood. Chronic conditions of the subject are always present;
    rhythm, ectopy and repolarisation findings vary per record. NORM marks records with nothing abnormal."""
    p = subject.propensity
    codes: list[str] = []
    u = rng.random(9)
    if u[0] < p["AFIB"]:
        rhythm = "AFIB"
    elif u[0] < p["AFIB"] + p["AFLT"]:
        rhythm = "AFLT"
    elif u[1] < p["SBRAD"]:
        rhythm = "SBRAD"
    elif u[1] < p["SBRAD"] + p["STACH"]:
        rhythm = "STACH"
    else:
        rhythm = "SR"
    atrial = rhythm in ("AFIB", "AFLT")
    codes.extend(c for c in subject.chronic if not (atrial and c == "1AVB"))
    bbb = "CLBBB" in codes
    if u[2] < p["PAC"] and not atrial:
        codes.append("PAC")
    if u[3] < p["PVC"]:
        codes.append("PVC")
    if u[4] < p["STD_"] and not bbb:
        codes.append("STD_")
    if u[5] < p["INVT"] and not bbb:
        codes.append("INVT")
    if u[6] < p["LNGQT"]:
        codes.append("LNGQT")
    abnormal = [c for c in codes if c not in ("SBRAD", "STACH")]
    labels: dict[str, float] = {}
    if not abnormal and rhythm in ("SR", "SBRAD", "STACH"):
        labels["NORM"] = float(rng.choice((100.0, 80.0), p=[0.9, 0.1]))
    for code in codes:
        labels[code] = _likelihood(code, rng)
    labels[rhythm] = 0.0
    return labels


def _check_conditions(conditions: Sequence[str]) -> set[str]:
    conds = set(conditions)
    unknown = sorted(conds - set(CONDITIONS))
    if unknown:
        raise DataError(f"unknown synthetic condition(s) {', '.join(unknown)}", field="conditions",
                        fix=f"use PTB-XL SCP codes among {', '.join(CONDITIONS)}")
    rhythms = sorted(conds & _RHYTHM_CODES)
    if len(rhythms) > 1:
        raise DataError(f"conflicting rhythms {', '.join(rhythms)}", field="conditions",
                        fix="give at most one of SR, SBRAD, STACH, AFIB, AFLT")
    if conds & {"AFIB", "AFLT"} and conds & {"1AVB", "PAC"}:
        raise DataError("1AVB and PAC need sinus P waves; they cannot go with AFIB/AFLT", field="conditions")
    if {"CRBBB", "CLBBB"} <= conds:
        raise DataError("CRBBB and CLBBB are mutually exclusive", field="conditions")
    if {"LVH", "LVOLT"} <= conds:
        raise DataError("LVH and LVOLT are mutually exclusive", field="conditions")
    if len(conds & set(_MI_CODES)) > 1:
        raise DataError("give at most one infarct territory (IMI, ASMI, AMI)", field="conditions")
    return conds


# ---------------------------------------------------------------------------------------------------------
# Beat templates: lobes of the heart vector. Each lobe: group, centre (s), sigma left/right (s), plateau flag,
# vector (mV). Groups: 0 = P (time from P onset), 1 = QRS (from QRS onset), 2 = ST/T/U (from QRS onset, scaled
# with the beat's QT).
_P, _QRS, _REPOL = 0, 1, 2


class _Template:
    """Lobes of one beat type as arrays."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float, float, bool, np.ndarray]] = []

    def add(self, group: int, centre: float, sl: float, sr: float, vec: np.ndarray,
            plateau: bool = False) -> None:
        self.rows.append((group, centre, sl, sr, plateau, np.asarray(vec, dtype=float)))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.rows:
            z = np.zeros(0)
            return z.astype(int), z, z, z, z.astype(bool), np.zeros((0, 3))
        g, c, sl, sr, pl, v = zip(*self.rows, strict=True)
        return (np.array(g), np.array(c), np.array(sl), np.array(sr), np.array(pl), np.stack(v))

    def scale_group(self, group: int, factor: float) -> None:
        self.rows = [(g, c, sl, sr, pl, v * factor if g == group else v) for g, c, sl, sr, pl, v in self.rows]


def _render(centre: np.ndarray, sl: np.ndarray, sr: np.ndarray, plateau: np.ndarray, vec: np.ndarray,
            fs: float, n: int) -> np.ndarray:
    """Sum of (asymmetric, optionally flat-topped) Gaussian lobes -> heart vector (n, 3). Each lobe is only
    evaluated on its own support window, and the windows are scattered with bincount (vectorised)."""
    out = np.zeros((n, 3))
    if centre.size == 0:
        return out
    lo = np.floor((centre - 3.5 * sl) * fs).astype(np.int64)  # exp(-3.5^2) < 1e-5: below 1 uV for any lobe
    hi = np.ceil((centre + 3.5 * sr) * fs).astype(np.int64)
    keep = (hi >= 0) & (lo < n)
    span = hi - lo
    # Narrow (QRS, P) and wide (ST-T) lobes are evaluated separately so the window fits each group.
    narrow = span <= 80
    for group in (keep & narrow, keep & ~narrow):
        if not np.any(group):
            continue
        c, a, b, pl, v, lo_g, hi_g = (x[group] for x in (centre, sl, sr, plateau, vec, lo, hi))
        width = int((hi_g - lo_g).max()) + 1
        idx = lo_g[:, None] + np.arange(width)[None, :]
        dt = idx / fs - c[:, None]
        x2 = np.square(dt / np.where(dt < 0, a[:, None], b[:, None]))
        if np.any(pl):
            x2 = np.where(pl[:, None], x2 * x2, x2)
        val = np.exp(-x2)
        valid = (idx >= 0) & (idx < n) & (idx <= hi_g[:, None])
        flat = idx[valid]
        val = val[valid]
        rows = np.broadcast_to(np.arange(c.size)[:, None], idx.shape)[valid]
        for d in range(3):
            out[:, d] += np.bincount(flat, weights=val * v[rows, d], minlength=n)
    return out


@dataclass
class _Morph:
    """Per-record morphology parameters derived from the subject and the conditions."""

    qrs_s: float
    pr_s: float
    qtc_s: float
    has_p: bool


def _templates(subject: Subject, conds: set[str], rng: np.random.Generator,
               lead_vectors: np.ndarray) -> tuple[dict[str, _Template], _Morph]:
    """Beat templates of one record: normal 'N', atrial premature 'A', ventricular premature 'V'."""
    s, tr, sh = subject, subject.traits, subject.shape
    amp = s.qrs_amp_mv * float(rng.lognormal(0, 0.03))
    axis = s.axis_deg + float(rng.normal(0, 2))
    qrs = s.qrs_s
    pr = tr["pr_1avb_s"] if "1AVB" in conds else s.pr_s
    qtc = tr["qtc_long_s"] if "LNGQT" in conds else s.qtc_s
    has_p = not (conds & {"AFIB", "AFLT"})
    septal = _norm([-0.55, 0.3, 0.8]) * s.septal_mv
    terminal = _norm([-0.35 + 0.1 * sh[0], -0.6, -0.65]) * s.terminal_mv
    t_vec = _unit(s.t_axis_deg, s.t_tilt_deg) * s.t_amp_mv
    q_vec = np.zeros(3)
    st_vec = np.zeros(3)
    m1_tilt, m2_tilt = 8.0 + 4 * sh[1], s.qrs_tilt_deg - 12.0
    rbbb = lbbb = False

    if "LAFB" in conds:
        axis = tr["lafb_axis_deg"]
        # Initial inferior-right forces: q in I/aVL, r in II/III/aVF.
        septal = _norm([-0.3, 0.85, 0.4]) * max(s.septal_mv, 0.18)
        qrs += 0.012
    if "CRBBB" in conds:
        rbbb = True
        qrs = tr["rbbb_qrs_s"]
    if "CLBBB" in conds:
        lbbb = True
        qrs = tr["lbbb_qrs_s"]
        amp *= 1.25
    if "LVH" in conds:
        qrs += 0.01
        m2_tilt -= 10.0
    if "IMI" in conds:
        q_vec = _norm([0.25, -1.0, 0.05]) * tr["mi_q_mv"]      # initial forces away from the inferior wall
        st_vec = _norm([-0.28, 0.96, 0.1]) * tr["mi_st_mv"]    # injury current toward II, III, aVF
    elif "AMI" in conds:
        q_vec = _norm([-0.15, 0.0, -1.0]) * tr["mi_q_mv"] * 1.2  # away from the anterior wall: QS in V1-V4
        st_vec = _norm([0.3, -0.05, 0.95]) * tr["mi_st_mv"]
    elif "ASMI" in conds:
        q_vec = _norm([0.1, 0.05, -1.0]) * tr["mi_q_mv"]
        st_vec = _norm([0.1, -0.05, 1.0]) * tr["mi_st_mv"] * 0.5
    if "STD_" in conds:
        st_vec = st_vec - _norm([0.6, 0.55, 0.45]) * tr["std_mv"]  # subendocardial: toward aVR, away from V5
    if "INVT" in conds:
        if "IMI" in conds:
            t_vec = t_vec * np.array([1.0, -1.0, 1.0]) * tr["invt"]
        elif conds & {"AMI", "ASMI"}:
            t_vec = t_vec * np.array([0.6, 1.0, -1.0]) * tr["invt"] - np.array([0, 0, 0.1])
        else:
            t_vec = -t_vec * tr["invt"]

    n = _Template()
    if has_p:
        p_axis = s.p_axis_deg
        n.add(_P, 0.36 * s.p_s, 0.16 * s.p_s, 0.16 * s.p_s, _unit(p_axis + 15, 30) * s.p_amp_mv * 0.75)
        n.add(_P, 0.62 * s.p_s, 0.17 * s.p_s, 0.17 * s.p_s, _unit(p_axis - 10, -30) * s.p_amp_mv * 0.8)

    lv = min(qrs, 0.092)  # duration of (left) ventricular activation through the normal conduction system
    if lbbb:
        # Septum activated right-to-left, LV slowly through muscle: broad notched R in I/aVL/V5-V6, QS in V1.
        main = _unit(axis - 10, -50)
        n.add(_QRS, 0.12 * qrs, 0.08 * qrs, 0.08 * qrs, _norm([0.7, 0.1, -0.4]) * 0.3)
        n.add(_QRS, 0.36 * qrs, 0.13 * qrs, 0.12 * qrs, main * amp * 0.85)
        n.add(_QRS, 0.68 * qrs, 0.12 * qrs, 0.12 * qrs, _unit(axis - 25, -35) * amp * 0.9)
        st_vec = st_vec - main * 0.12 * amp
        t_vec = -main * max(s.t_amp_mv, 0.3) * 1.2  # discordant T
    else:
        if np.any(q_vec):  # infarct: initial forces point away from the dead wall (pathological Q)
            n.add(_QRS, 0.16 * lv, 0.1 * lv, 0.1 * lv, q_vec)
        else:
            n.add(_QRS, 0.13 * lv, 0.07 * lv, 0.07 * lv, septal)
        m1 = _unit(axis + 4 * sh[2], m1_tilt)
        m2 = _unit(axis - 12 + 4 * sh[3], m2_tilt)
        if "AMI" in conds or "ASMI" in conds:
            m1 = _norm(m1 * np.array([1, 1, 0.3]))  # lost anterior forces
        n.add(_QRS, (0.40 + 0.02 * sh[4]) * lv, 0.13 * lv, 0.12 * lv, m1 * amp * 0.75)
        n.add(_QRS, (0.58 + 0.02 * sh[5]) * lv, 0.12 * lv, 0.12 * lv, m2 * amp * 0.75)
        n.add(_QRS, 0.84 * lv, 0.09 * lv, 0.1 * lv, terminal)
        if rbbb:
            # Late, slow right-ventricular activation, rightward and anterior: R' in V1-V3, wide S in I/V6.
            late = _norm([-0.75, -0.05, 0.65]) * tr["rbbb_mv"]
            n.add(_QRS, qrs - 0.034, 0.02, 0.016, late)
            t_vec = t_vec - late * 0.35
    qt0 = qtc * (60.0 / 75.0) ** (1 / 3)  # template QT at 75 bpm; per beat it is rescaled by its RR
    sr = 0.115 * qt0
    sl = 0.17 * qt0
    t_peak = qt0 - 2.3 * sr
    n.add(_REPOL, t_peak, sl, sr, t_vec)
    n.add(_REPOL, qt0 + 0.065, 0.035, 0.03, t_vec * (0.08 + 0.03 * sh[6]))  # U wave
    if np.any(st_vec):
        n.add(_REPOL, qrs + 0.085, 0.075, 0.1, st_vec, plateau=True)

    # Voltage constraints, checked on the rendered QRS: LVH meets Sokolow-Lyon, LVOLT stays under 0.5 mV in
    # the limb leads, and nobody else meets Sokolow-Lyon by accident.
    qrs_leads = _qrs_projection(n, lead_vectors)
    if "LVOLT" in conds:
        limb_ptp = float((qrs_leads[:6].max(axis=1) - qrs_leads[:6].min(axis=1)).max())
        n.scale_group(_QRS, tr["lvolt_mv"] / max(limb_ptp, 1e-6))
        n.scale_group(_REPOL, 0.6)
    else:
        sokolow = float(-qrs_leads[6].min() + max(qrs_leads[10].max(), qrs_leads[11].max()))
        if "LVH" in conds and sokolow < tr["lvh_sokolow_mv"]:
            n.scale_group(_QRS, tr["lvh_sokolow_mv"] / max(sokolow, 1e-6))
        elif "LVH" not in conds and not lbbb and sokolow > 3.2:
            n.scale_group(_QRS, 3.2 / sokolow)
    if "LVH" in conds and "STD_" in conds:
        main = _unit(axis, m2_tilt)  # strain: lateral T inversion against the dominant QRS vector
        n.rows = [(g, c, a, b, pl, -main * 0.25 if (g == _REPOL and c == t_peak) else v)
                  for g, c, a, b, pl, v in n.rows]

    # Atrial premature beat: early, different P (low atrial focus), normal QRS-T.
    a = _Template()
    a.rows = [r for r in n.rows if r[0] != _P]
    a.add(_P, 0.45 * s.p_s, 0.2 * s.p_s, 0.2 * s.p_s, _unit(tr["pac_p_axis_deg"], 10) * s.p_amp_mv * 0.9)
    # Ventricular premature beat: no P, wide bizarre QRS from an ectopic focus, discordant ST-T.
    v = _Template()
    pq = tr["pvc_qrs_s"]
    pv = _unit(tr["pvc_axis_deg"], tr["pvc_tilt_deg"])
    pv2 = _unit(tr["pvc_axis_deg"] + 35, tr["pvc_tilt_deg"] - 20)
    v.add(_QRS, 0.33 * pq, 0.17 * pq, 0.15 * pq, pv * tr["pvc_mv"])
    v.add(_QRS, 0.66 * pq, 0.15 * pq, 0.15 * pq, pv2 * tr["pvc_mv"] * 0.6)
    v.add(_REPOL, pq + 0.2, 0.09, 0.06, -pv * 0.45)
    return {"N": n, "A": a, "V": v}, _Morph(qrs_s=qrs, pr_s=pr, qtc_s=qtc, has_p=has_p)


def _qrs_projection(t: _Template, lead_vectors: np.ndarray, fs: float = 1000.0) -> np.ndarray:
    """The QRS lobes of a template rendered alone and projected onto the 12 leads: (12, samples)."""
    g, c, sl, sr, pl, vec = t.arrays()
    m = g == _QRS
    n = int(0.3 * fs)
    h = _render(c[m] + 0.05, sl[m], sr[m], pl[m], vec[m], fs, n)
    return _combine(lead_vectors, h.T)


# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Beats:
    onset: np.ndarray   # QRS onset (s)
    kind: np.ndarray    # 'N', 'A', 'V'
    rr: np.ndarray      # preceding RR (s), used for QT adaptation


def _beats(subject: Subject, conds: set[str], rng: np.random.Generator, duration_s: float) -> _Beats:
    """Ventricular beats of one record: sinus with respiratory + LF variability, or AF / flutter."""
    tr = subject.traits
    start, end = -float(rng.uniform(0.4, 1.6)), duration_s + 0.8
    onsets: list[float] = []
    kinds: list[str] = []
    if "AFIB" in conds:
        mean_rr = 60.0 / (tr["af_rate_bpm"] * float(rng.uniform(0.9, 1.1)))
        t = start
        while t < end:
            onsets.append(t)
            kinds.append("N")
            # Irregularly irregular: independent intervals, floored by AV-node refractoriness.
            t += max(0.3, mean_rr * float(rng.lognormal(0, tr["af_irregularity"])))
    elif "AFLT" in conds:
        cycle = 60.0 / tr["flutter_bpm"]
        variable = tr["flutter_variable"] < 0.4
        t = start
        while t < end:
            onsets.append(t)
            kinds.append("N")
            ratio = int(rng.choice((2, 3, 4), p=[0.5, 0.3, 0.2])) if variable else 2
            t += ratio * cycle
    else:
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
        t = start
        while t < end:
            onsets.append(t)
            kinds.append("N")
            t += rr0 * (1 + subject.hrv_resp * math.sin(2 * math.pi * subject.resp_hz * t + ph_r)
                        + subject.hrv_lf * math.sin(2 * math.pi * lf_hz * t + ph_l) + 0.006 * rng.normal())
    onset = np.array(onsets)
    kind = np.array(kinds)
    # Ectopic beats replace sinus beats inside the visible window.
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


def _lead_vectors(subject: Subject, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Electrode vectors (9, 3) for this record (subject habitus + small placement jitter) and the 12 lead
    vectors they imply."""
    limb = _LIMB_ELECTRODES * subject.limb_gain * float(rng.lognormal(0, 0.03))
    ang = np.radians(_PRECORDIAL_ANGLES + np.array(subject.precordial_shift_deg) + rng.normal(0, 2.0, 6))
    gain = _PRECORDIAL_GAIN * np.array(subject.precordial_gain) * rng.lognormal(0, 0.03, 6)
    tilt = np.radians(rng.normal(0, 3.0, 6))
    prec = np.stack([np.cos(ang) * np.cos(tilt), np.sin(tilt), np.sin(ang) * np.cos(tilt)], axis=1)
    prec = prec * gain[:, None]
    electrodes = np.concatenate([limb, prec], axis=0)
    return electrodes, np.einsum("ij,jk->ik", _LEAD_MATRIX, electrodes)


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

    # Per beat: QT adapted to the preceding RR (Fridericia), amplitude jitter with respiration, PR jitter.
    qt_ratio = np.clip((beats.rr / 0.8) ** (1 / 3), 0.7, 1.35)
    resp_phase = 2 * np.pi * subject.resp_hz * beats.onset + rng.uniform(0, 2 * np.pi)
    qrs_gain = 1 + 0.04 * np.sin(resp_phase) + 0.02 * rng.normal(size=beats.onset.size)
    t_gain = 1 + 0.03 * rng.normal(size=beats.onset.size)
    pr = morph.pr_s + 0.003 * rng.normal(size=beats.onset.size)
    rot = np.radians(2.5 * np.sin(resp_phase))  # respiration swings the frontal axis a little

    cols: list[list[np.ndarray]] = [[], [], [], [], []]
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
    heart = _render(*(np.concatenate(cc) for cc in cols), fs=fs, n=n)
    t = np.arange(n) / fs
    if not morph.has_p:
        heart += _atrial_activity(subject, conds, rng, t)

    pot = _combine(electrodes, heart.T)  # (9, n) electrode potentials
    pot += _noise(subject, rng, t, fs)
    return _form_leads(pot)


def _form_leads(pot: np.ndarray) -> np.ndarray:
    """The 12 standard leads from electrode potentials (RA, LA, LL, V1..V6), as the ECG machine forms them
    (equal to ``_LEAD_MATRIX @ pot``, written out because it is faster)."""
    ra, la, ll = pot[0], pot[1], pot[2]
    leads = np.empty((12, pot.shape[1]), dtype=np.float32)
    leads[0] = la - ra
    leads[1] = ll - ra
    leads[2] = ll - la
    leads[3] = ra - 0.5 * (la + ll)
    leads[4] = la - 0.5 * (ra + ll)
    leads[5] = ll - 0.5 * (ra + la)
    leads[6:] = pot[3:] - (ra + la + ll) / 3.0
    return leads


def _noise(subject: Subject, rng: np.random.Generator, t: np.ndarray, fs: float) -> np.ndarray:
    """Per-electrode baseline wander (respiration + drift), EMG (high-passed white noise) and powerline,
    (9, n) float32 (noise needs no more precision, and float32 halves the memory traffic)."""
    n = t.size
    level = float(rng.lognormal(0, 0.4))
    bw = subject.baseline_mv * level * rng.uniform(0.3, 1.0, 9)
    ph = rng.uniform(0, 2 * np.pi, (3, 9))
    f_drift = float(rng.uniform(0.03, 0.1))
    # Each sinusoid as a * sin(wt) + b * cos(wt): one (9, k) x (k, n) mix of a few shared waveforms.
    waves = [np.sin(2 * np.pi * subject.resp_hz * t), np.cos(2 * np.pi * subject.resp_hz * t),
             np.sin(2 * np.pi * f_drift * t), np.cos(2 * np.pi * f_drift * t)]
    weights = [bw * np.cos(ph[0]), bw * np.sin(ph[0]), 0.6 * bw * np.cos(ph[1]), 0.6 * bw * np.sin(ph[1])]
    if subject.powerline_mv > 0:
        pl = subject.powerline_mv * level * rng.uniform(0.5, 1.0, 9)
        waves += [np.sin(2 * np.pi * subject.powerline_hz * t), np.cos(2 * np.pi * subject.powerline_hz * t)]
        weights += [pl * np.cos(ph[2]), pl * np.sin(ph[2])]
    white = rng.standard_normal((9, n + 1), dtype=np.float32)
    emg_level = subject.emg_mv * level * np.array([1.5, 1.5, 1.2, 1, 1, 1, 1, 1, 1], dtype=np.float32)
    out = np.diff(white, axis=1)
    out *= (emg_level / np.float32(math.sqrt(2)))[:, None]
    out += _combine(np.stack(weights, axis=1).astype(np.float32), np.stack(waves).astype(np.float32))
    return out


def _combine(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """weights (m, k) @ x (k, n) as k broadcast multiply-adds: tiny matrices, so no BLAS (whose threads
    oversubscribe busy machines and make this 10x slower)."""
    out = weights[:, :1] * x[None, 0]
    for j in range(1, weights.shape[1]):
        if np.any(weights[:, j]):
            out += weights[:, j:j + 1] * x[None, j]
    return out


# ---------------------------------------------------------------------------------------------------------
# Dataset writer (PTB-XL layout).
_PTBXL_COLUMNS = (
    "ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device", "recording_date",
    "report", "scp_codes", "heart_axis", "infarction_stadium1", "infarction_stadium2", "validated_by",
    "second_opinion", "initial_autogenerated_report", "validated_by_human", "baseline_drift", "static_noise",
    "burst_noise", "electrodes_problems", "extra_beats", "pacemaker", "strat_fold", "filename_lr",
    "filename_hr",
)
_ORDER = list(CONDITIONS)


def _seed(seed: int, *key: int) -> np.random.Generator:
    """Independent stream per (seed, key...): the same record gets the same numbers for any worker count."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def report_text(labels: dict[str, float]) -> str:
    """A short English report in PTB-XL style from a record's SCP codes."""
    codes = sorted(labels, key=lambda c: (c not in _RHYTHM_CODES, _ORDER.index(c) if c in _ORDER else 99))
    phrases = []
    for c in codes:
        phrase = CONDITIONS.get(c, c.lower())
        if labels[c] in (50.0, 35.0) and c not in _RHYTHM_CODES and c not in _FORM_CODES:
            phrase = f"possible {phrase}"
        phrases.append(phrase)
    return ". ".join(phrases) + "."


def _wfdb_bytes(name: str, signal: np.ndarray, fs: float, base: str | None = None) -> tuple[bytes, bytes]:
    """(.hea text, .dat bytes) of a format-16 WFDB record, gain 1000/mV, baseline 0, as wfdb.wrsamp writes it.
    Writing them directly is ~100x faster than wfdb.wrsamp (whose header code goes through pandas)."""
    digital = np.clip(np.round(signal.astype(np.float64) * 1000.0), -32767, 32767).astype("<i2")  # (12, n)
    n = digital.shape[1]
    checksum = (digital.astype(np.int64).sum(axis=1) % 65536).tolist()
    first = f"{name} 12 {fs:g} {n}" + (f" {base}" if base else "")
    lines = [first]
    for i, lead in enumerate(LEADS):
        lines.append(f"{name}.dat 16 1000.0(0)/mV 16 0 {int(digital[i, 0])} {checksum[i]} 0 {lead}")
    return ("\n".join(lines) + "\n").encode(), np.ascontiguousarray(digital.T).tobytes()


def _record_paths(ecg_id: int, width: int) -> tuple[str, str]:
    bucket = f"{(ecg_id // 1000) * 1000:0{width}d}"
    return (f"records100/{bucket}/{ecg_id:0{width}d}_lr", f"records500/{bucket}/{ecg_id:0{width}d}_hr")


def _done(root: Path, task: dict[str, Any], write_lr: bool) -> bool:
    # The header is renamed into place after the .dat, so a header means a complete record.
    return (root / f"{task['hr']}.hea").exists() and (not write_lr or (root / f"{task['lr']}.hea").exists())


def _write_task(root: Path, task: dict[str, Any], fs: float, duration_s: float, seed: int,
                write_lr: bool) -> None:
    rng = _seed(seed, 1, task["index"], 1)
    signal = generate_record(task["subject"], task["conditions"], rng, fs=fs, duration_s=duration_s)
    base = task["base_time"]
    outputs = [(task["hr"], signal, fs)]
    if write_lr:
        from scipy.signal import resample_poly

        factor = fs / 100.0
        lr = resample_poly(signal, 1, int(round(factor)), axis=1) if factor != 1 else signal
        outputs.append((task["lr"], lr, 100.0))
    for rel, sig, rate in outputs:
        path = root / rel
        hea, dat = _wfdb_bytes(path.name, sig, rate, base)
        atomic_write_bytes(path.with_suffix(".dat"), dat)
        atomic_write_bytes(path.with_suffix(".hea"), hea)


def _worker(args: tuple[Path, list[dict[str, Any]], float, float, int, bool]) -> int:
    root, tasks, fs, duration_s, seed, write_lr = args
    for task in tasks:
        _write_task(root, task, fs, duration_s, seed, write_lr)
    return len(tasks)


def _heart_axis(subject: Subject, conds: dict[str, float]) -> str | None:
    axis = subject.traits["lafb_axis_deg"] if "LAFB" in conds else subject.axis_deg
    if axis < -30:
        return "LAD" if "LAFB" not in conds else "ALAD"
    if axis > 90:
        return "RAD"
    return "MID"


def generate_dataset(out: str | Path, *, subjects: int = 200, records_per_subject: int = 5, seed: int = 0,
                     fs: float = 500, duration_s: float = 10.0, workers: int = 0, write_lr: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Write a synthetic dataset in PTB-XL layout to ``out`` and return a summary
    (path, subjects, records, conditions counts, seconds, records_per_s, written, skipped).

    Resumable: records whose files exist are skipped; ptbxl_database.csv is written last, atomically.
    Output is identical for any ``workers`` (per-record random streams derive from (seed, record index)).
    """
    import pandas as pd
    from tqdm import tqdm

    if subjects < 1 or records_per_subject < 1:
        raise DataError(f"subjects={subjects}, records_per_subject={records_per_subject}",
                        field="subjects", fix="both must be >= 1")
    if fs < 100 or fs % 100:
        raise DataError(f"fs={fs} Hz is not supported", field="fs", fix="use a multiple of 100 Hz (500)")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} exists and is not a folder", path=str(root), fix="choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    params = {"generator": "esi.synthetic/1", "seed": seed, "fs": fs, "duration_s": duration_s,
              "records_per_subject": records_per_subject}
    marker = root / "synthetic.json"
    if marker.exists():
        old = json.loads(marker.read_text())
        if {k: old.get(k) for k in params} != params:
            raise DataError(f"{root} holds a synthetic dataset made with other parameters ({old})",
                            path=str(marker), fix="choose a new --out folder or delete the old one")
    atomic_write_json(marker, {**params, "subjects": subjects})

    t0 = time.perf_counter()
    n_rec = subjects * records_per_subject
    width = max(5, len(str(n_rec)))
    fold_order = _seed(seed, 2).permutation(subjects)
    folds = np.empty(subjects, dtype=int)
    folds[fold_order] = np.arange(subjects) % 10 + 1  # balanced folds, each subject in exactly one
    rows, tasks = [], []
    counts: Counter[str] = Counter()
    base_day = np.datetime64("1990-01-01T08:00:00")
    for s in range(subjects):
        subject = make_subject(_seed(seed, 0, s), subject_id=s + 1)
        first_day = int(_seed(seed, 3, s).integers(0, 365 * 10))
        for k in range(records_per_subject):
            index = s * records_per_subject + k
            ecg_id = index + 1
            labels = generate_labels(_seed(seed, 1, index, 0), subject)
            counts.update(labels.keys())
            when = (base_day + np.timedelta64(first_day + 60 * k, "D")
                    + np.timedelta64((index * 7919) % 36000, "s"))
            stamp = str(when).replace("T", " ")
            lr, hr = _record_paths(ecg_id, width)
            rows.append({
                "ecg_id": ecg_id, "patient_id": float(subject.subject_id), "age": float(subject.age),
                "sex": 1 if subject.sex == "F" else 0, "height": np.nan, "weight": np.nan, "nurse": np.nan,
                "site": np.nan, "device": "ESI-SYNTH", "recording_date": stamp, "report": report_text(labels),
                "scp_codes": repr(labels), "heart_axis": _heart_axis(subject, labels),
                "infarction_stadium1": "Stadium II" if any(c in labels for c in _MI_CODES) else np.nan,
                "infarction_stadium2": np.nan, "validated_by": np.nan, "second_opinion": False,
                "initial_autogenerated_report": False, "validated_by_human": True, "baseline_drift": np.nan,
                "static_noise": np.nan, "burst_noise": np.nan, "electrodes_problems": np.nan,
                "extra_beats": "VES" if "PVC" in labels else ("SVES" if "PAC" in labels else np.nan),
                "pacemaker": np.nan, "strat_fold": int(folds[s]), "filename_lr": lr, "filename_hr": hr,
            })
            hh, mm, ss = stamp[11:13], stamp[14:16], stamp[17:19]
            base = f"{hh}:{mm}:{ss} {stamp[8:10]}/{stamp[5:7]}/{stamp[0:4]}"
            tasks.append({"index": index, "subject": subject, "conditions": list(labels), "hr": hr, "lr": lr,
                          "base_time": base})
    todo = [t for t in tasks if not _done(root, t, write_lr)]
    skipped = len(tasks) - len(todo)
    if skipped:
        log.info("synthetic: %d of %d records already exist, generating %d", skipped, len(tasks), len(todo))
    t_gen = time.perf_counter()
    with tqdm(total=len(todo), desc="synth", unit="rec", disable=not progress) as bar:
        if workers and workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            chunk = max(1, min(64, len(todo) // (workers * 4) or 1))
            jobs = [(root, todo[i:i + chunk], fs, duration_s, seed, write_lr)
                    for i in range(0, len(todo), chunk)]
            with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
                for done in pool.imap_unordered(_worker, jobs):
                    bar.update(done)
        else:
            for task in todo:
                _write_task(root, task, fs, duration_s, seed, write_lr)
                bar.update(1)
    gen_s = time.perf_counter() - t_gen
    rate = len(todo) / gen_s if gen_s > 0 else float("inf")
    log.info("synthetic: wrote %d records in %.1f s (%.1f records/s, %d workers)", len(todo), gen_s, rate,
             max(workers, 1))

    # Metadata last: a dataset with a database CSV is complete.
    shutil.copyfile(SCP_STATEMENTS, root / ".scp_statements.csv.tmp")
    os.replace(root / ".scp_statements.csv.tmp", root / "scp_statements.csv")
    db = pd.DataFrame(rows, columns=list(_PTBXL_COLUMNS))
    atomic_write_bytes(root / "ptbxl_database.csv", db.to_csv(index=False).encode())
    atomic_write_bytes(root / "RECORDS", ("\n".join(t["hr"] for t in tasks) + "\n").encode())
    seconds = time.perf_counter() - t0
    return {"path": str(root), "subjects": subjects, "records": len(tasks), "written": len(todo),
            "skipped": skipped, "conditions": dict(sorted(counts.items())), "seconds": round(seconds, 3),
            "records_per_s": round(rate, 1)}


__all__ = ["CONDITIONS", "RHYTHMS", "Subject", "generate_dataset", "generate_labels", "generate_record",
           "make_subject", "report_text"]
