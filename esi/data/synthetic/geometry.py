"""Torso geometry: electrode lead vectors in dipole space (x to the subject's left, y inferior, z anterior),
the per-record electrode placement, and how an ECG machine forms the 12 leads from electrode potentials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from esi.data.synthetic.subject import (
    PRECORDIAL_GAIN_LOG_SD,
    PRECORDIAL_SHIFT_SD_DEG,
    realism_profile,
    session_mix,
)

if TYPE_CHECKING:
    from esi.data.synthetic.subject import Subject

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


def _lead_vectors(subject: Subject, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Electrode vectors (9, 3) for this record (subject habitus, the session's placement under the profile's
    ``session_electrodes`` share, small jitter) and the 12 lead vectors they imply."""
    cal = realism_profile(subject.realism)
    limb = _LIMB_ELECTRODES * subject.limb_gain * float(rng.lognormal(0, 0.03))
    shift = np.array(subject.precordial_shift_deg)
    log_gain = np.log(np.array(subject.precordial_gain))
    jitter_deg, jitter_gain = rng.normal(0, 2.0, 6), rng.lognormal(0, 0.03, 6)
    tilt = np.radians(rng.normal(0, 3.0, 6))
    if cal["session_electrodes"] > 0:  # only then: v1/v2 records keep their random streams
        shift = session_mix(shift, 0.0, PRECORDIAL_SHIFT_SD_DEG, cal["session_electrodes"], rng)
        log_gain = session_mix(log_gain, 0.0, PRECORDIAL_GAIN_LOG_SD, cal["session_electrodes"], rng)
    ang = np.radians(_PRECORDIAL_ANGLES + shift + jitter_deg)
    gain = _PRECORDIAL_GAIN * np.exp(log_gain) * jitter_gain
    gain[0] *= cal["v1_gain"]
    prec = np.stack([np.cos(ang) * np.cos(tilt), np.sin(tilt), np.sin(ang) * np.cos(tilt)], axis=1)
    prec = prec * gain[:, None]
    electrodes = np.concatenate([limb, prec], axis=0)
    return electrodes, np.einsum("ij,jk->ik", _LEAD_MATRIX, electrodes)


def atrial_electrodes(electrodes: np.ndarray, subject: Subject) -> np.ndarray:
    """Electrode vectors for atrial activity: the atria lie posterior and far from V1-V6, so the precordial
    electrodes see P waves (and f waves) weaker than a single-dipole model with ventricular gains predicts."""
    out = electrodes.copy()
    out[3:] *= realism_profile(subject.realism)["p_precordial"]
    return out


def _combine(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """weights (m, k) @ x (k, n) as k broadcast multiply-adds: tiny matrices, so no BLAS (whose threads
    oversubscribe busy machines and make this 10x slower)."""
    out = weights[:, :1] * x[None, 0]
    for j in range(1, weights.shape[1]):
        if np.any(weights[:, j]):
            out += weights[:, j:j + 1] * x[None, j]
    return out


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
