"""Per-record labels: which SCP codes a record of a subject shows, with PTB-XL-like likelihoods, and the
short English report written for them."""

from __future__ import annotations

import numpy as np

from esi.data.synthetic.conditions import _FORM_CODES, _RHYTHM_CODES, CONDITIONS
from esi.data.synthetic.subject import Subject

_ALLOWED_PROB = (100.0, 80.0, 50.0, 35.0)
_ORDER = list(CONDITIONS)


def _likelihood(code: str, rng: np.random.Generator) -> float:
    """A PTB-XL-like likelihood: rhythm and most form statements 0.0, diagnostic ones mostly 100."""
    if code in _RHYTHM_CODES:
        return 0.0
    if code in _FORM_CODES:
        return 100.0 if code == "PVC" and rng.random() < 0.5 else 0.0
    return float(rng.choice(_ALLOWED_PROB, p=[0.82, 0.09, 0.06, 0.03]))


def _rhythm(p: dict[str, float], u: np.ndarray) -> str:
    if u[0] < p["AFIB"]:
        return "AFIB"
    if u[0] < p["AFIB"] + p["AFLT"]:
        return "AFLT"
    if u[1] < p["SBRAD"]:
        return "SBRAD"
    if u[1] < p["SBRAD"] + p["STACH"]:
        return "STACH"
    return "SR"


def generate_labels(rng: np.random.Generator, subject: Subject) -> dict[str, float]:
    """Draw one record's SCP codes -> likelihood. Chronic conditions of the subject are always present;
    rhythm, ectopy and repolarisation findings vary per record. NORM marks records with nothing abnormal."""
    p = subject.propensity
    codes: list[str] = []
    u = rng.random(9)
    rhythm = _rhythm(p, u)
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
