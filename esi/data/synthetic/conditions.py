"""The conditions the generator can express (PTB-XL SCP codes), their report phrases, the statement kinds,
the check of a condition set, and the per-key random streams every other part draws from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from esi.errors import DataError

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


def _seed(seed: int, *key: int) -> np.random.Generator:
    """Independent stream per (seed, key...): the same record gets the same numbers for any worker count."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def _check_conditions(conditions: Sequence[str]) -> set[str]:
    """``conditions`` as a set, or a DataError naming the unknown or conflicting codes."""
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
