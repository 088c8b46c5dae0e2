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

Modules: :mod:`.conditions` (codes, checks, random streams), :mod:`.subject` (subjects), :mod:`.labels`
(per-record codes and report), :mod:`.geometry` (electrodes, lead formation), :mod:`.beats` (beat
waveforms), :mod:`.rhythm` (beat times, AF/flutter activity), :mod:`.noise`, :mod:`.record` (one record)
and :mod:`.writer` (the PTB-XL-layout dataset).
"""

from __future__ import annotations

from esi.data.synthetic.conditions import CONDITIONS, RHYTHMS, _seed
from esi.data.synthetic.labels import generate_labels, report_text
from esi.data.synthetic.record import generate_record
from esi.data.synthetic.subject import DEFAULT_REALISM, REALISM, Subject, make_subject, realism_profile
from esi.data.synthetic.writer import SCP_STATEMENTS, generate_dataset

__all__ = ["CONDITIONS", "DEFAULT_REALISM", "REALISM", "RHYTHMS", "SCP_STATEMENTS", "Subject", "generate_dataset",
           "generate_labels", "generate_record", "make_subject", "realism_profile", "report_text", "_seed"]
