"""The EcgRecord contract: 12 leads in canonical order, millivolts, with metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esi.errors import DataError

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
N_LEADS = len(LEADS)
_CANONICAL = {name.lower(): i for i, name in enumerate(LEADS)}
# Spellings seen in real headers besides the canonical names (case is ignored everywhere).
_ALIASES = {"avr": "avr", "-avr": None, "d1": "i", "d2": "ii", "d3": "iii", "lead i": "i", "lead ii": "ii",
            "lead iii": "iii"}

SEXES = ("M", "F")


def canonical_lead(name: str) -> str | None:
    """Canonical name of a lead label ('AVR', 'avr', 'aVR' -> 'aVR'); None for a non-standard lead."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key) if key in _ALIASES else key
    if key is None or key not in _CANONICAL:
        return None
    return LEADS[_CANONICAL[key]]


def reorder_leads(signal: np.ndarray, names: list[str], *, path: str | None = None) -> np.ndarray:
    """Return ``signal`` (n_channels, n) with rows in canonical order, chosen by lead NAME, never position.

    Extra channels (Frank leads vx/vy/vz, for example) are dropped; a missing or duplicated standard lead is
    a DataError naming the leads.
    """
    if signal.shape[0] != len(names):
        raise DataError(f"signal has {signal.shape[0]} channels but the header names {len(names)}",
                        path=path, field="sig_name")
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        canon = canonical_lead(name)
        if canon is None:
            continue
        if canon in index:
            raise DataError(f"lead {canon} appears twice ({names[index[canon]]!r} and {name!r})",
                            path=path, field="sig_name", fix="give each lead one channel")
        index[canon] = i
    missing = [lead for lead in LEADS if lead not in index]
    if missing:
        raise DataError(f"missing standard lead(s) {', '.join(missing)}; found {', '.join(names)}",
                        path=path, field="sig_name",
                        fix="ESI needs the 12 standard leads I, II, III, aVR, aVL, aVF, V1-V6")
    return signal[[index[lead] for lead in LEADS]]


def normalize_sex(value: Any) -> str | None:
    """Map the sex codings of the sources ('Male', 'female', 0/1 in PTB-XL where 0 = male) to M/F/None."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip().lower()
    if text in ("m", "male", "0", "0.0", "man"):
        return "M"
    if text in ("f", "female", "1", "1.0", "woman"):
        return "F"
    return None


def normalize_age(value: Any) -> float | None:
    """Age in years as float, or None when absent/unknown ('Unknown', NaN, '')."""
    if value is None:
        return None
    try:
        age = float(value)
    except (TypeError, ValueError):
        return None
    if np.isnan(age):
        return None
    return age


AGE_RANGE = (0.0, 120.0)  # years; outside it an age is a coding (PTB-XL writes 300 for > 89) or a typo


def checked_age(value: Any) -> tuple[float | None, list[str]]:
    """(age or None, flags): an age outside :data:`AGE_RANGE` becomes None with flag 'age_out_of_range=<value>'."""
    age = normalize_age(value)
    if age is not None and not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        return None, [f"age_out_of_range={age:g}"]
    return age, []


@dataclass
class EcgRecord:
    """One ECG: ``signal`` is float32 (12, n_samples) in mV, leads in :data:`LEADS` order, sampled at ``fs`` Hz."""

    record_id: str
    signal: np.ndarray
    fs: float
    source: str
    subject_id: str | None = None
    age: float | None = None
    sex: str | None = None
    labels: dict[str, float] = field(default_factory=dict)  # raw labels -> likelihood/certainty (0-100 or 1)
    label_system: str = "none"  # scp | snomed | icbeb | mimic | text | none: how to read ``labels``
    report: str | None = None
    fold: int | None = None
    path: str | None = None
    conditions: dict[str, float] = field(default_factory=dict)  # harmonised condition id -> certainty 0-1
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. original_fs, nan_filled, window

    def __post_init__(self) -> None:
        if self.signal.ndim != 2 or self.signal.shape[0] != N_LEADS:
            raise DataError(f"record {self.record_id}: signal shape {self.signal.shape}, expected (12, n)",
                            path=self.path, field="signal")
        self.signal = np.asarray(self.signal, dtype=np.float32)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.fs)
