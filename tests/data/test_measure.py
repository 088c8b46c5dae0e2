"""ECG measurements on hand-built signals with known answers and on real PTB-XL 500 Hz records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esi.data import measure as m
from esi.errors import DataError

FS = 500


def spike_train(rr_s: list[float], *, width_s: float = 0.02, n_s: float = 10.0, p_lead_s: float | None = None,
                t_wave: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A single-lead ECG-like signal built by hand: Gaussian R spikes at known times (+ optional P and T)."""
    t = np.arange(int(n_s * FS)) / FS
    x = np.zeros_like(t)
    beats = np.cumsum([0.5, *rr_s])
    beats = beats[beats < n_s - 0.3]
    for b in beats:
        x += 1.2 * np.exp(-0.5 * ((t - b) / (width_s / 4)) ** 2)
        if t_wave:
            x += 0.3 * np.exp(-0.5 * ((t - b - 0.28) / 0.04) ** 2)
        if p_lead_s is not None:
            x += 0.15 * np.exp(-0.5 * ((t - b + p_lead_s) / 0.018) ** 2)
    x += np.random.default_rng(0).normal(0, 0.005, t.size)
    return x, np.round(beats * FS).astype(int)


def test_r_peaks_at_known_positions() -> None:
    x, truth = spike_train([0.8] * 12)
    found = m.detect_r_peaks(x, FS)
    assert len(found) == len(truth)
    assert np.abs(found - truth).max() <= 2
    assert m.heart_rate(x, FS) == pytest.approx(75.0, abs=0.5)
    assert m.rr_irregularity(x, FS) < 0.01


def test_irregularity_follows_the_rr_series() -> None:
    rng = np.random.default_rng(1)
    rr = list(rng.uniform(0.45, 1.1, 14))
    x, _ = spike_train(rr)
    expected = np.diff(m.detect_r_peaks(x, FS)) / FS
    assert m.rr_irregularity(x, FS) == pytest.approx(expected.std() / expected.mean(), rel=1e-6)
    assert m.rr_irregularity(x, FS) > 0.15
    assert m.rr_irregularity(x, FS, method="rmssd") > 0.2
    with pytest.raises(DataError, match="method"):
        m.rr_irregularity(x, FS, method="nope")


def test_qrs_width_grows_with_the_complex() -> None:
    narrow, _ = spike_train([0.8] * 12, width_s=0.06)
    wide, _ = spike_train([0.8] * 12, width_s=0.14)
    assert m.qrs_width_ms(wide, FS) > m.qrs_width_ms(narrow, FS) + 40
    mixed = np.stack([narrow] * 6 + [wide] * 6)  # limb leads narrow, precordial leads wide
    assert m.qrs_width_ms(mixed, FS, lead="V1") == m.qrs_width_ms(wide, FS)
    assert m.qrs_width_ms(mixed, FS, lead="II") == m.qrs_width_ms(narrow, FS)


def test_pr_interval_of_a_known_p_wave() -> None:
    with_p, _ = spike_train([0.85] * 11, p_lead_s=0.2)
    without_p, _ = spike_train([0.85] * 11)
    assert 150 < m.pr_interval_ms(with_p, FS) < 230
    assert m.pr_interval_ms(without_p, FS) is None


def test_bad_inputs_raise_domain_errors() -> None:
    with pytest.raises(DataError, match="too short"):
        m.heart_rate(np.zeros(100), FS)
    x12 = np.tile(spike_train([0.8] * 12)[0], (12, 1))
    with pytest.raises(DataError, match="unknown lead"):
        m.st_level_mv(x12, FS, "V7")
    with pytest.raises(DataError, match="12 standard leads"):
        m.qrs_axis_deg(x12[:3], FS)
    with pytest.raises(DataError, match="QRS complexes"):
        m.median_beat(np.zeros((12, 5000)), FS)


def _real_500hz(real_dir: Path) -> list:
    from esi.data.readers import get_reader

    reader = get_reader("ptbxl")
    recs = [reader.read(ref) for ref in reader.list_refs(real_dir / "ptbxl", rate="500")
            if Path(ref.path + ".hea").exists()]
    assert len(recs) >= 5
    return recs


def test_measures_are_plausible_on_real_ptbxl_records(real_dir: Path) -> None:
    for rec in _real_500hz(real_dir):
        x, fs = rec.signal, rec.fs
        assert 40 < m.heart_rate(x, fs) < 120
        assert 50 < m.qrs_width_ms(x, fs) < 130
        pr = m.pr_interval_ms(x, fs)
        assert pr is None or 90 < pr < 320
        qt = m.qt_interval_ms(x, fs)
        assert qt is not None and 280 < qt < 480
        assert -90 < m.qrs_axis_deg(x, fs) < 120
        assert 0.3 < m.qrs_amplitude_mv(x, fs, "V5") < 5
        if "NORM" in rec.labels:
            st = m.st_level_mv(x, fs)
            assert np.abs(st[:6]).max() < 0.1  # limb leads near the PR level
            assert np.abs(st[6:]).max() < 0.3  # V2-V3 allow the normal (male) early-repolarisation elevation
            assert m.rr_irregularity(x, fs) < 0.08
            assert m.sokolow_lyon_mv(x, fs) < 3.5
            assert m.t_amplitude_mv(x, fs, "II") > 0


def test_real_record_with_pvcs_is_irregular_and_lvh_like(real_dir: Path) -> None:
    """PTB-XL ecg 841 is labelled PVC, LVH (35 %) and ST depression in I, II, aVL, V3-V6."""
    recs = {r.record_id: r for r in _real_500hz(real_dir)}
    pvc = recs["ptbxl/841"]
    normals = [r for r in recs.values() if "NORM" in r.labels]
    assert m.rr_irregularity(pvc.signal, 500) > 2 * max(m.rr_irregularity(r.signal, 500) for r in normals)
    st = m.st_level_mv(pvc.signal, 500)
    assert st[[0, 1, 4, 10, 11]].mean() < -0.03

