import numpy as np
import pytest

from esi.data.preprocess import PreprocessConfig, bandpass, fill_nans, preprocess, resample
from esi.data.record import EcgRecord
from esi.errors import ConfigError, RecordReadError


def _sine_record(fs: float, seconds: float, freq: float = 5.0, rid: str = "r") -> EcgRecord:
    t = np.arange(int(fs * seconds)) / fs
    sig = np.stack([np.sin(2 * np.pi * freq * t) * (1 + i / 12) for i in range(12)]).astype(np.float32)
    return EcgRecord(record_id=rid, signal=sig, fs=fs, source="test")


def _dominant_hz(x: np.ndarray, fs: float) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spec)])


@pytest.mark.parametrize("fs_in", [100, 400, 1000, 257])
def test_resample_to_500(fs_in: int) -> None:
    rec = _sine_record(fs_in, 10.0)
    out = resample(rec.signal.astype(np.float64), fs_in, 500)
    assert out.shape == (12, 5000)
    assert _dominant_hz(out[0], 500) == pytest.approx(5.0, abs=0.15)
    # amplitude is kept (away from the edges)
    assert np.abs(out[0, 500:-500]).max() == pytest.approx(1.0, abs=0.03)


def test_preprocess_fixed_shape_and_meta() -> None:
    rec = _sine_record(100, 10.0)
    (win,) = preprocess(rec, PreprocessConfig())
    assert win.signal.shape == (12, 5000) and win.fs == 500 and win.signal.dtype == np.float32
    assert win.meta["original_fs"] == 100 and win.meta["padded_samples"] == 0 and not win.meta["nan_filled"]


def test_short_record_is_padded_and_flagged() -> None:
    (win,) = preprocess(_sine_record(400, 7.335), PreprocessConfig())
    assert win.signal.shape == (12, 5000)
    assert win.meta["padded_samples"] == 5000 - round(7.335 * 500)
    assert np.all(win.signal[:, -300:] == 0)


@pytest.mark.parametrize("policy,count", [("first", 1), ("center", 1), ("all", 3)])
def test_window_policies(policy: str, count: int) -> None:
    rec = _sine_record(500, 35.0)
    rec.signal[:, :5000] += 3.0  # a step marks the first window
    wins = preprocess(rec, PreprocessConfig(window=policy, highpass_hz=None, lowpass_hz=None))
    assert len(wins) == count
    if policy == "all":
        assert [w.record_id for w in wins] == ["r", "r#w1", "r#w2"]
    first_mean = float(wins[0].signal.mean())
    assert (first_mean > 2) == (policy != "center")


def test_baseline_wander_removed() -> None:
    fs = 500
    t = np.arange(5000) / fs
    wander = 1.5 * np.sin(2 * np.pi * 0.1 * t) + 0.8
    beat = np.sin(2 * np.pi * 8 * t) * 0.5
    x = np.tile(wander + beat, (12, 1))
    y = bandpass(x, fs, 0.5, 100.0)
    assert abs(y[0, 1000:4000].mean()) < 0.05  # offset and wander gone
    assert np.std(y[0, 1000:4000]) == pytest.approx(np.std(beat), rel=0.1)  # 8 Hz content kept


def test_nans_interpolated_and_flagged() -> None:
    rec = _sine_record(500, 10.0)
    rec.signal[3, 100:200] = np.nan
    filled, frac = fill_nans(rec.signal)
    assert np.isfinite(filled).all() and frac == pytest.approx(100 / (12 * 5000))
    (win,) = preprocess(rec, PreprocessConfig())
    assert win.meta["nan_filled"] and np.isfinite(win.signal).all()


def test_mostly_missing_record_rejected() -> None:
    rec = _sine_record(500, 10.0)
    rec.signal[:6] = np.nan
    with pytest.raises(RecordReadError, match="50% of samples are missing"):
        preprocess(rec, PreprocessConfig())


def test_too_short_rejected() -> None:
    with pytest.raises(RecordReadError, match="below the 2.0 s minimum"):
        preprocess(_sine_record(500, 1.0), PreprocessConfig())


def test_config_checks() -> None:
    with pytest.raises(ConfigError):
        PreprocessConfig(window="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PreprocessConfig(highpass_hz=50, lowpass_hz=40)
    assert PreprocessConfig().digest() != PreprocessConfig(fs=250).digest()


@pytest.mark.parametrize(("fs", "hp", "lp", "n"), [(500, 0.5, 100.0, 5000), (500, 0.5, None, 5000),
                                                   (500, None, 40.0, 5000), (100, 0.5, 100.0, 1000),
                                                   (360, 1.0, 150.0, 3600), (500, 0.5, 100.0, 20)])
def test_bandpass_equals_scipy_sosfiltfilt(fs: float, hp, lp, n: int) -> None:
    """The cached design + own forward-backward pass is scipy's sosfiltfilt exactly (same padding, same zi)."""
    from scipy.signal import butter, sosfiltfilt

    from esi.data.preprocess import bandpass

    x = np.random.default_rng(1).normal(size=(12, n)).cumsum(axis=1)
    lp_eff = None if lp is None or lp >= 0.95 * fs / 2 else lp
    if hp and lp_eff:
        sos = butter(2, [hp, lp_eff], btype="bandpass", fs=fs, output="sos")
    elif hp:
        sos = butter(2, hp, btype="highpass", fs=fs, output="sos")
    else:
        sos = butter(2, lp_eff, btype="lowpass", fs=fs, output="sos")
    expected = sosfiltfilt(sos, x, axis=1, padlen=min(n - 1, 3 * (2 * len(sos) + 1) * 10))
    for _ in range(2):  # the second call uses the cached design
        np.testing.assert_allclose(bandpass(x, fs, hp, lp), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", ["in_place", "sosfilt"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_bandpass_paths_and_layouts_give_sosfiltfilt(kernel: str, order: str, monkeypatch) -> None:
    """scipy's in-place kernel on our buffers and the public sosfilt fallback give sosfiltfilt, for C- and
    Fortran-ordered signals (a .mat signal arrives in Fortran order), and leave the input untouched."""
    from scipy.signal import butter, sosfiltfilt

    import esi.data.preprocess as pre

    if kernel == "sosfilt":
        monkeypatch.setattr(pre, "_inplace_sosfilt", lambda: None)
    else:
        assert pre._inplace_sosfilt() is not None, "the probe refused scipy's kernel: the fast path is off"
    x = np.asarray(np.random.default_rng(2).normal(size=(12, 3000)).cumsum(axis=1), order=order)
    before = x.copy()
    sos = butter(2, [0.5, 100.0], btype="bandpass", fs=500, output="sos")
    expected = sosfiltfilt(sos, x, axis=1, padlen=150)
    np.testing.assert_allclose(bandpass(x, 500, 0.5, 100.0), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(x, before)
    one = x[:, :1]  # padlen 0: the kernel must not filter the caller's array in place
    np.testing.assert_allclose(bandpass(one, 500, 0.5, 100.0), sosfiltfilt(sos, one, axis=1, padlen=0),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(x, before)


def test_preprocess_windows_match_preprocess() -> None:
    """The converter's path (float64 windows, no record per window) is preprocess() before its float32 cast."""
    from esi.data.preprocess import preprocess_windows

    rec = _sine_record(500, 25.0)
    config = PreprocessConfig(window="all")
    wins, nan_frac = preprocess_windows(rec, config)
    recs = preprocess(rec, config)
    assert [w[0] for w in wins] == [r.meta["window"] for r in recs] == [0, 1]
    assert [r.record_id for r in recs] == ["r", "r#w1"] and nan_frac == 0.0
    for (_, win, _), r in zip(wins, recs, strict=True):
        assert win.dtype == np.float64
        np.testing.assert_array_equal(win.astype(np.float32), r.signal)
