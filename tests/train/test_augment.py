"""Pretraining augmentations: deterministic under a seed, shapes and units kept, each artefact where it belongs."""

from __future__ import annotations

import numpy as np
import pytest

from esi.errors import ConfigError
from esi.train.config import AugmentConfig
from esi.train.data import augment_signal

FS = 500.0
N = 5000


def _ecg() -> np.ndarray:
    t = np.arange(N) / FS
    beat = np.exp(-((t % 0.8) - 0.4) ** 2 / (2 * 0.01**2))  # 75 bpm spikes
    return (np.linspace(0.5, 1.5, 12)[:, None] * beat[None, :]).astype(np.float32)


def _power(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    f = np.fft.rfftfreq(x.shape[-1], 1 / FS)
    return float(spec[..., (f >= lo) & (f <= hi)].sum())


def _only(**kw) -> AugmentConfig:
    return AugmentConfig(**{**AugmentConfig.disabled().__dict__, **kw})


def test_disabled_is_the_identity() -> None:
    x = _ecg()
    y = augment_signal(x, np.random.default_rng(0), AugmentConfig.disabled(), FS)
    assert np.array_equal(x, y)


def test_same_seed_same_output_and_shape_and_dtype_kept() -> None:
    cfg = AugmentConfig(baseline_wander=0.3, powerline=0.1, emg=0.05, lead_dropout=0.1, lead_scale=0.2)
    x = _ecg()
    a = augment_signal(x, np.random.default_rng([1, 2, 3]), cfg, FS)
    b = augment_signal(x, np.random.default_rng([1, 2, 3]), cfg, FS)
    c = augment_signal(x, np.random.default_rng([1, 2, 4]), cfg, FS)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(x, _ecg())  # the input is not modified in place


@pytest.mark.parametrize(("setting", "band"), [
    ({"baseline_wander": 0.5}, (0.04, 0.6)),
    ({"powerline": 0.2}, (49.0, 61.0)),
    ({"emg": 0.1}, (60.0, 150.0)),
])
def test_each_artefact_adds_power_in_its_band_only(setting: dict, band: tuple[float, float]) -> None:
    x = _ecg()
    ratios = []
    for seed in range(5):
        y = augment_signal(x, np.random.default_rng(seed), _only(**setting), FS)
        ratios.append(_power(y, *band) / max(_power(x, *band), 1e-9))
    assert np.median(ratios) > 2.0, ratios
    # far from the band, the spectrum is what it was (within a few percent)
    y = augment_signal(x, np.random.default_rng(0), _only(**setting), FS)
    far = (180.0, 240.0) if band[1] < 100 else (0.0, 0.02)
    assert abs(_power(y, *far) - _power(x, *far)) <= 0.05 * _power(x, *far) + 1e-6


def test_artefact_amplitude_is_in_millivolts() -> None:
    x = np.zeros((12, N), np.float32)
    peaks = [np.abs(augment_signal(x, np.random.default_rng(s), _only(baseline_wander=0.4), FS)).max()
             for s in range(20)]
    assert max(peaks) <= 0.4 + 1e-6 and max(peaks) > 0.1


def test_lead_dropout_zeroes_leads_but_never_all_twelve() -> None:
    x = _ecg()
    zeroed = []
    for seed in range(200):
        y = augment_signal(x, np.random.default_rng(seed), _only(lead_dropout=0.9), FS)
        off = int((np.abs(y).sum(axis=1) == 0).sum())
        assert off < 12
        zeroed.append(off)
    assert np.mean(zeroed) > 8


def test_probability_zero_applies_no_artefact() -> None:
    x = _ecg()
    y = augment_signal(x, np.random.default_rng(0), _only(baseline_wander=0.5, powerline=0.2, probability=0.0), FS)
    assert np.array_equal(x, y)


@pytest.mark.parametrize("bad", [{"baseline_wander": -1}, {"powerline": 9}, {"lead_dropout": 1.0},
                                 {"probability": 1.5}, {"lead_scale": 1.0}])
def test_out_of_range_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        AugmentConfig(**bad).validate()
