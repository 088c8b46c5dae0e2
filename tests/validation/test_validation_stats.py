"""Signal statistics: each fault moves its own statistic; the pass streams batch by batch."""

from __future__ import annotations

import numpy as np
import pytest

from esi.data.record import LEADS
from esi.data.store import EcgStore
from esi.validation.signal_stats import batch_statistics, signal_statistics

LI, LII, LIII, AVR, AVL, AVF = range(6)  # lead rows


@pytest.fixture(scope="module")
def base(storekit) -> np.ndarray:
    # the stored precision (float16), as the statistics pass sees it
    return storekit.synth(8, seed=3).astype(np.float16).astype(np.float32)


def stats(x: np.ndarray) -> dict:
    return batch_statistics(x, 500.0, list(LEADS))


def test_clean_records_look_clean(base: np.ndarray) -> None:
    s = stats(base)
    assert (s["stored_nan_fraction"] == 0).all() and (s["flat_leads"] == 0).all()
    assert (s["clipping_fraction"] < 0.005).all()
    assert ((s["amplitude_mv"] > 0.3) & (s["amplitude_mv"] < 10)).all()
    assert (s["baseline_offset_mv"] < 0.5).all() and (s["hf_noise_ratio"] < 0.3).all()
    assert (s["limb_residual"] < 0.3).all() and (s["arm_reversal_hint"] == 0).all()


def test_nan_and_flat_leads(base: np.ndarray) -> None:
    x = base.copy()
    x[0, 8] = np.nan  # a whole NaN lead (V3)
    x[1, LII] = 0.0
    x[2, LIII, 100:110] = np.nan  # a short gap
    s = stats(x)
    assert s["stored_nan_fraction"][0] == pytest.approx(1 / 12)
    assert s["flat_leads"][0] == 1 and s["flat_lead_names"][0] == "V3"  # NaNs count as 0 for other stats
    assert s["flat_leads"][1] == 1 and s["flat_lead_names"][1] == "II"
    assert s["stored_nan_fraction"][2] == pytest.approx(10 / (12 * 5000))
    assert s["flat_leads"][2] == 0 and np.isfinite(s["amplitude_mv"][2])


def test_clipping_amplitude_baseline_noise(base: np.ndarray) -> None:
    x = base.copy()
    hi = 0.3 * np.abs(x[0, LII]).max()
    x[0, LII] = np.clip(x[0, LII], -hi, hi)
    x[1] *= 1000.0  # microvolts stored as millivolts
    x[2] += 2.0  # an uncorrected baseline
    x[3] += np.random.default_rng(0).normal(0, 1.0, x[3].shape).astype(np.float32)
    s = stats(x)
    assert s["clipping_fraction"][0] > 0.02 and s["clipped_leads"][0] == "II"
    assert s["amplitude_mv"][1] > 30
    assert s["baseline_offset_mv"][2] == pytest.approx(2.0, abs=0.1)
    assert s["hf_noise_ratio"][3] > 0.6
    assert all(s[k][4] == stats(base)[k][4] for k in ("clipping_fraction", "amplitude_mv"))


def test_lead_swap_hints(base: np.ndarray) -> None:
    x = base.copy()
    # LA/RA reversal: I -> -I, II <-> III, aVR <-> aVL (aVF unchanged)
    i, ii, iii, avr, avl = (x[0, k].copy() for k in (LI, LII, LIII, AVR, AVL))
    x[0, LI], x[0, LII], x[0, LIII], x[0, AVR], x[0, AVL] = -i, iii, ii, avl, avr
    # a swapped cable between I and V5 breaks Einthoven
    x[1, [LI, 10]] = x[1, [10, LI]]
    # the pattern the hint looks for: lead I inverted while aVR is upright
    x[2, LI], x[2, AVR] = -x[2, LI], -x[2, AVR]
    s = stats(x)
    assert s["lead_I_polarity"][0] < 0  # the reversal inverts lead I ...
    assert s["limb_residual"][0] < 0.3  # ... and keeps the limb leads consistent
    assert s["limb_residual"][1] > 0.3
    assert s["arm_reversal_hint"][2] == 1 and s["lead_I_polarity"][2] < 0 < s["lead_aVR_polarity"][2]
    assert s["arm_reversal_hint"][[1, 3, 4, 5, 6, 7]].sum() == 0


def test_eleven_leads_do_not_break_the_pass(base: np.ndarray) -> None:
    s = batch_statistics(base[:, :11], 500.0, list(LEADS[:11]))
    assert (s["n_leads"] == 11).all() and np.isfinite(s["amplitude_mv"]).all()
    s = batch_statistics(base[:, :11], 500.0, list(LEADS))  # names disagree with the array: no lead hints
    assert np.isnan(s["limb_residual"]).all()


def test_streaming_pass_matches_batches_and_bounds_memory(tmp_path, monkeypatch, storekit) -> None:
    x = storekit.synth(30, seed=5)
    rows = storekit.rows(30)
    rows[4]["nan_fraction"] = 0.07  # NaNs the preparation filled count too
    store = EcgStore(storekit.write(tmp_path / "s", x, rows, shard_size=8))
    seen: list[int] = []
    original = EcgStore.iter_batches

    def spy(self, batch_size=256, indices=None):
        for idx, batch in original(self, batch_size, indices):
            seen.append(len(batch))
            yield idx, batch

    monkeypatch.setattr(EcgStore, "iter_batches", spy)
    df = signal_statistics(store, batch_size=7, progress=False)
    assert max(seen) <= 7 and sum(seen) == 30
    assert list(df["record_id"]) == [r["record_id"] for r in rows]
    assert df["nan_fraction"][4] == pytest.approx(0.07) and df["nan_fraction"].drop(4).max() == 0
    whole = batch_statistics(store.signals(range(30)), 500.0, list(LEADS))
    np.testing.assert_allclose(df["amplitude_mv"], whole["amplitude_mv"], rtol=1e-6)
    np.testing.assert_allclose(df["hf_noise_ratio"], whole["hf_noise_ratio"], rtol=1e-4)
