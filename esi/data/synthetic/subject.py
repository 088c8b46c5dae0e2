"""Synthetic subjects: demographics, a stable heart morphology, noise habits and chronic conditions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from esi.data.synthetic.conditions import _MI_CODES
from esi.errors import ConfigError

DEFAULT_REALISM = "v2"
# Generator calibration profiles. v1: the first generator. v2: matched to the real benchmark records by
# `esi data compare` (ranked gaps: QRS/T amplitude, precordial P, right-precordial ST, normal QRS width, PR,
# QTc, 1AVB PR, powerline prevalence); see docs/data.md. v3: v2 with session variation.
# Session variation: the share of the between-subject variance of precordial electrode placement
# (session_electrodes) and of the recording-noise levels (session_noise) redrawn for every record. 0: a subject's
# electrodes sit where they sat last time and its noise habits never change (v1, v2: their records stay as they
# were); 1: placement or noise belong to the session, not to the person, as in real repeat recordings
# (electrodes re-applied, another room and patient state).
_V2 = {"qrs_amp": 0.65, "qrs_s": 0.084, "pr_s": 0.160, "qtc_s": 0.415, "t_amp": 0.72, "t_tilt_deg": 30.0,
       "powerline": 0.6, "powerline_share": 0.2, "share_50hz": 0.6, "p_precordial": 0.45, "p_tilt_ra": 35.0,
       "p_tilt_la": 0.0, "v1_gain": 0.85, "j_point_mv": 0.027, "pr_1avb_scale": 0.95, "lbbb_st": 0.06,
       "mi_st": 0.8, "session_electrodes": 0.0, "session_noise": 0.0, "enrich": 1.0}
REALISM: dict[str, dict[str, float]] = {
    "v1": {"qrs_amp": 1.0, "qrs_s": 0.092, "pr_s": 0.148, "qtc_s": 0.400, "t_amp": 1.0, "t_tilt_deg": 18.0,
           "powerline": 1.0, "powerline_share": 0.5, "share_50hz": 1.0, "p_precordial": 1.0, "p_tilt_ra": 30.0,
           "p_tilt_la": -30.0, "v1_gain": 1.0, "j_point_mv": 0.0, "pr_1avb_scale": 1.0, "lbbb_st": 0.12, "mi_st": 1.0,
           "session_electrodes": 0.0, "session_noise": 0.0, "enrich": 1.0},
    "v2": _V2,
    "v3": {**_V2, "session_electrodes": 0.7, "session_noise": 1.0},
    "v2e": {**_V2, "enrich": 3.0},
}

# Population spreads shared by the subject draw and the per-session redraw (log-normal sd where "log").
PRECORDIAL_SHIFT_SD_DEG = 5.0
PRECORDIAL_GAIN_LOG_SD = 0.12
BASELINE_MV, BASELINE_LOG_SD = 0.08, 0.6
EMG_MV, EMG_LOG_SD = 0.008, 0.6
POWERLINE_MV, POWERLINE_LOG_SD = 0.006, 0.8


def realism_profile(name: str) -> dict[str, float]:
    """The calibration factors of a realism profile (``v1``, ``v2`` or ``v3``)."""
    if name not in REALISM:
        raise ConfigError(f"unknown generator realism {name!r}; choose one of {', '.join(REALISM)}")
    return REALISM[name]


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
    realism: str = "v1"  # the calibration profile (REALISM) the subject was drawn with


def _draw_traits(rng: np.random.Generator) -> dict[str, float]:
    """The stable parameters of every condition, drawn for everybody so the stream does not depend on them."""
    return {
        "sbrad_bpm": float(rng.uniform(42, 55)),
        "stach_bpm": float(rng.uniform(106, 138)),
        "af_rate_bpm": float(rng.uniform(72, 128)),
        "af_irregularity": float(rng.uniform(0.16, 0.28)),
        "af_f_hz": float(rng.uniform(5.0, 8.0)),
        "af_f_mv": float(rng.uniform(0.03, 0.09)),
        "flutter_bpm": float(rng.uniform(260, 330)),
        "flutter_mv": float(rng.uniform(0.12, 0.25)),
        "flutter_variable": float(rng.random()),
        "pr_1avb_s": float(rng.uniform(0.225, 0.32)),  # rescaled toward real PR by the realism profile
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


def _draw_chronic(rng: np.random.Generator, f_age: float, female: bool, enrich: float = 1.0
                  ) -> tuple[list[str], np.ndarray]:
    """Chronic conditions: independent draws whose odds grow with age; exclusive ones resolved in order.
    ``enrich`` multiplies the odds of the headline conditions (bundle branch blocks, 1AVB; AF in
    :func:`_draw_propensity`). Returns them with the uniform draws, whose last two also decide the AF and
    flutter propensities."""
    chronic: list[str] = []
    u = rng.random(8)
    if u[0] < 0.04 + 0.16 * f_age * (1.2 if not female else 0.8):
        chronic.append("LVH")
    if u[1] < (0.015 + 0.06 * f_age) * enrich:
        chronic.append("CRBBB")
    elif u[1] < (0.025 + 0.11 * f_age) * enrich:
        chronic.append("CLBBB")
    if u[2] < 0.015 + 0.07 * f_age and "CLBBB" not in chronic:
        chronic.append("LAFB")
    if u[3] < 0.03 + 0.2 * f_age * (1.2 if not female else 0.7):
        chronic.append(str(rng.choice(_MI_CODES, p=[0.55, 0.3, 0.15])))
    else:
        rng.random()  # keep the stream aligned whether or not a territory was drawn
    if u[4] < (0.015 + 0.07 * f_age) * enrich:
        chronic.append("1AVB")
    if u[5] < 0.04 and "LVH" not in chronic:
        chronic.append("LVOLT")
    return chronic, u


def _draw_propensity(rng: np.random.Generator, chronic: list[str], u: np.ndarray,
                     f_age: float, enrich: float = 1.0) -> dict[str, float]:
    """Per-record probabilities of the transient findings."""
    af_prone = u[6] < (0.01 + 0.14 * f_age) * enrich
    ischaemic = any(c in chronic for c in _MI_CODES)
    return {
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


def make_subject(rng: np.random.Generator, subject_id: int = 0, realism: str = DEFAULT_REALISM) -> Subject:
    """Draw a subject. Age (18-90) and sex shape the signal: women have lower QRS voltage, a shorter QRS
    and a longer QTc; with age the axis moves left, voltage falls, PR lengthens and HR variability shrinks."""
    age = int(np.clip(round(rng.normal(60, 17)), 18, 90))
    sex = "F" if rng.random() < 0.48 else "M"
    female = sex == "F"
    f_age = (age - 18) / 72.0  # 0 at 18, 1 at 90
    axis = float(np.clip(rng.normal(62 - 0.45 * (age - 18), 22), -25, 100))
    # Calibrated against the real benchmark records (esi data compare, 383 real vs 600 synthetic records):
    # QRS and T amplitudes of the first generator ran 1.4-1.7x the real ones, the normal QRS ~12 ms wide and
    # PR/QTc short. REALISM holds the factors; `realism="v1"` keeps the first generator (for ablations).
    cal = realism_profile(realism)
    amp = (1.55 * cal["qrs_amp"] * (1.12 - 0.3 * f_age) * (0.84 if female else 1.0)
           * float(rng.lognormal(0, 0.15)))
    qrs_s = float(np.clip(rng.normal(cal["qrs_s"] - (0.006 if female else 0.0), 0.007), 0.07, 0.106))
    pr_s = float(np.clip(rng.normal(cal["pr_s"] + 0.03 * f_age, 0.016), 0.12, 0.2))
    qtc = float(np.clip(rng.normal(cal["qtc_s"] + (0.014 if female else 0.0) + 0.012 * f_age, 0.014), 0.36,
                        0.46))
    t_amp = (float(np.clip(rng.normal(0.36 if not female else 0.30, 0.08), 0.14, 0.65)) * (1.1 - 0.2 * f_age)
             * cal["t_amp"])
    traits = _draw_traits(rng)
    chronic, u = _draw_chronic(rng, f_age, female, cal["enrich"])
    propensity = _draw_propensity(rng, chronic, u, f_age, cal["enrich"])
    return Subject(
        subject_id=int(subject_id), age=age, sex=sex,
        hr_bpm=float(np.clip(rng.normal(72 + (3 if female else 0), 8), 62, 95)),
        axis_deg=axis, qrs_tilt_deg=float(rng.normal(-28, 8)), qrs_amp_mv=float(max(amp, 0.7)), qrs_s=qrs_s,
        pr_s=pr_s, p_s=float(np.clip(rng.normal(0.098, 0.01), 0.075, 0.115)), qtc_s=qtc,
        p_amp_mv=float(np.clip(rng.normal(0.16, 0.04), 0.07, 0.28)), p_axis_deg=float(rng.normal(55, 14)),
        t_amp_mv=t_amp, t_axis_deg=float(axis + rng.normal(-5, 16)),
        t_tilt_deg=float(rng.normal(cal["t_tilt_deg"], 8)),
        septal_mv=float(rng.uniform(0.1, 0.3)), terminal_mv=float(rng.uniform(0.1, 0.35)),
        limb_gain=float(rng.lognormal(0, 0.1)),
        precordial_gain=tuple(float(g) for g in rng.lognormal(0, PRECORDIAL_GAIN_LOG_SD, 6)),
        precordial_shift_deg=tuple(float(s) for s in rng.normal(0, PRECORDIAL_SHIFT_SD_DEG, 6)),
        shape=tuple(float(s) for s in rng.normal(0, 1, 12)),
        hrv_resp=float(rng.uniform(0.01, 0.06) * (1.3 - 0.8 * f_age)), hrv_lf=float(rng.uniform(0.01, 0.03)),
        resp_hz=float(rng.uniform(0.18, 0.33)),
        baseline_mv=float(rng.lognormal(math.log(BASELINE_MV), BASELINE_LOG_SD)),
        emg_mv=float(rng.lognormal(math.log(EMG_MV), EMG_LOG_SD)),
        powerline_mv=(float(rng.lognormal(math.log(POWERLINE_MV * cal["powerline"]), POWERLINE_LOG_SD))
                      if rng.random() < cal["powerline_share"] else 0.0),
        powerline_hz=50.0 if cal["share_50hz"] >= 1 or rng.random() < cal["share_50hz"] else 60.0,
        chronic=tuple(chronic), traits=traits, propensity=propensity, realism=realism,
    )


def session_mix(subject_value: float | np.ndarray, centre: float, sd: float, share: float,
                rng: np.random.Generator) -> float | np.ndarray:
    """A subject's trait as one session shows it: ``share`` of its between-subject variance around ``centre``
    redrawn for this record, the rest kept; the population spread (``sd``) is unchanged."""
    fresh = rng.normal(0.0, sd, np.shape(subject_value))
    return centre + math.sqrt(1.0 - share) * (np.asarray(subject_value) - centre) + math.sqrt(share) * fresh
