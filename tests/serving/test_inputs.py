"""Request checks and preprocessing: every bad-input class gets a RequestError naming the field and range."""

from __future__ import annotations

import numpy as np
import pytest
from serving_helpers import ecg_batch

from esi.data.preprocess import PreprocessConfig, preprocess
from esi.data.record import EcgRecord
from esi.errors import RequestError
from esi.serving.inputs import (
    PayloadTooLarge,
    RequestLimits,
    check_ecg,
    check_size,
    check_texts,
    check_top_k,
    preprocess_batch,
    read_npy,
    serving_config,
)

LIMITS = RequestLimits(max_records=4, max_labels=3, max_bytes=1000)


class TestCheckEcg:
    def test_good_batch_and_single_ecg(self) -> None:
        arr, fs = check_ecg(ecg_batch(2, 2500).tolist(), 250, LIMITS)
        assert arr.shape == (2, 12, 2500) and fs == 250.0
        single, _ = check_ecg(ecg_batch(1, 2500)[0], 250, LIMITS)
        assert single.shape == (1, 12, 2500)

    @pytest.mark.parametrize(("ecg", "fs", "match"), [
        (np.zeros((1, 11, 5000)), 500, r"field 'ecg' has 11 leads.*expected 12"),
        (np.zeros((1, 13, 5000)), 500, r"13 leads"),
        (np.zeros((0, 12, 5000)), 500, r"field 'ecg' is empty"),
        ([], 500, r"field 'ecg' is empty"),
        (None, 500, r"field 'ecg' is missing"),
        ([[[1.0, 2.0], [3.0]]], 500, r"not a numeric array.*ragged"),
        ([["a"] * 5000] * 12, 500, r"not a numeric array"),
        (np.zeros((2, 2, 12, 5000)), 500, r"expected \(n, 12, samples\)"),
        (np.zeros((1, 12, 500)), 500, r"1.00 s; accepted 2-120 s"),
        (np.zeros((1, 12, 70000)), 500, r"140.00 s; accepted 2-120 s"),
        (np.zeros((1, 12, 5000)), 0, r"field 'fs': 0 Hz is outside the accepted range 50-10000 Hz"),
        (np.zeros((1, 12, 5000)), -500, r"field 'fs'.*outside"),
        (np.zeros((1, 12, 5000)), 1e6, r"field 'fs'.*outside"),
        (np.zeros((1, 12, 5000)), float("nan"), r"field 'fs'.*outside"),
        (np.zeros((1, 12, 5000)), "fast", r"field 'fs': 'fast' is not a number"),
        (np.full((1, 12, 5000), 500.0), 500, r"amplitude 500 exceeds 100 mV"),
    ])
    def test_bad_input(self, ecg, fs, match: str) -> None:
        with pytest.raises(RequestError, match=match):
            check_ecg(ecg, fs, LIMITS)

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_values_name_the_record(self, bad: float) -> None:
        x = ecg_batch(3)
        x[2, 5, 100] = bad
        with pytest.raises(RequestError, match=r"1 non-finite values \(NaN/inf\) in ECG\(s\) \[2\]"):
            check_ecg(x, 500, LIMITS)

    def test_too_many_records_is_a_size_error(self) -> None:
        with pytest.raises(PayloadTooLarge, match="holds 5 ECGs; at most 4"):
            check_ecg(np.zeros((5, 12, 5000)), 500, LIMITS)


class TestPreprocess:
    def test_same_function_as_training(self) -> None:
        """A 250 Hz request is resampled, filtered and windowed by esi.data.preprocess: identical output."""
        cfg = PreprocessConfig()
        x = ecg_batch(2, 3000)
        got = preprocess_batch(x.astype(np.float64), 250.0, cfg)
        for i in range(2):
            want = preprocess(EcgRecord(record_id="r", signal=x[i], fs=250.0, source="t"), cfg)[0].signal
            np.testing.assert_array_equal(got[i], want)
        assert got.shape == (2, 12, cfg.n_samples) and got.dtype == np.float32

    def test_all_windows_policy_serves_one_window(self) -> None:
        cfg = PreprocessConfig(window="all")
        assert serving_config(cfg).window == "first"
        assert preprocess_batch(ecg_batch(1, 12000).astype(np.float64), 500.0, cfg).shape == (1, 12, 5000)


class TestOtherFields:
    def test_top_k(self) -> None:
        assert check_top_k(3, 10) == 3
        assert check_top_k(50, 10) == 10  # capped at the number of labels
        for bad in (0, -1, 2.5, "3", True, 10_001):
            with pytest.raises(RequestError, match="field 'top_k'"):
                check_top_k(bad, 10)

    def test_texts(self) -> None:
        assert check_texts(["a ", "b"], "prompts", LIMITS) == ["a", "b"]
        with pytest.raises(RequestError, match=r"field 'prompts' is empty"):
            check_texts([], "prompts", LIMITS)
        with pytest.raises(RequestError, match=r"field 'labels'\[1\] is blank"):
            check_texts(["x", "  "], "labels", LIMITS)
        with pytest.raises(PayloadTooLarge, match="at most 3"):
            check_texts(["a", "b", "c", "d"], "labels", LIMITS)
        with pytest.raises(RequestError, match="list of strings"):
            check_texts([1, 2], "labels", LIMITS)

    def test_size_limit(self) -> None:
        check_size(1000, LIMITS)
        with pytest.raises(PayloadTooLarge, match="ESI_SERVE_MAX_REQUEST_MB"):
            check_size(1001, LIMITS)

    def test_limits_come_from_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from esi.settings import Settings

        monkeypatch.setenv("ESI_SERVE_MAX_REQUEST_MB", "2")
        monkeypatch.setenv("ESI_SERVE_MAX_RECORDS", "7")
        limits = RequestLimits.from_settings(Settings())
        assert limits.max_bytes == 2 * 2**20 and limits.max_records == 7


class TestReadNpy:
    """The .npy upload of embed_npy / zero_shot_npy: numbers only, never unpickled."""

    def test_float32_and_float64_round_trip(self, tmp_path) -> None:
        x = ecg_batch(2, 2500)
        for dtype in (np.float32, np.float64, np.int16):
            path = tmp_path / f"x-{np.dtype(dtype).name}.npy"
            np.save(path, x.astype(dtype))
            got = read_npy(path, LIMITS_NPY)
            assert got.dtype == dtype and got.shape == (2, 12, 2500)
            np.testing.assert_array_equal(got, x.astype(dtype))

    def test_pickled_object_array_is_refused_unread(self, tmp_path) -> None:
        path = tmp_path / "evil.npy"

        class Boom:
            def __reduce__(self):
                return (pytest.fail, ("the upload was unpickled",))

        np.save(path, np.array([Boom()], dtype=object), allow_pickle=True)
        with pytest.raises(RequestError, match=r"field 'ecg': unreadable \.npy.*numpy\.save"):
            read_npy(path, LIMITS_NPY)

    @pytest.mark.parametrize(("content", "match"), [
        (b"hello, not an array", r"field 'ecg' is not a \.npy file; send the bytes of numpy\.save"),
        (b"", r"is not a \.npy file"),
        ("truncated", r"unreadable \.npy"),
        ("complex", r"dtype complex128 is not real numbers"),
        ("strings", r"dtype <U3 is not real numbers"),
    ])
    def test_bad_uploads_name_the_field_and_the_fix(self, tmp_path, content, match) -> None:
        path = tmp_path / "x.npy"
        if content == "truncated":
            np.save(path, ecg_batch(1))
            path.write_bytes(path.read_bytes()[:5000])
        elif content == "complex":
            np.save(path, np.zeros((1, 12, 1000), np.complex128))
        elif content == "strings":
            np.save(path, np.array(["abc"]))
        else:
            path.write_bytes(content)
        with pytest.raises(RequestError, match=match):
            read_npy(path, LIMITS_NPY)

    def test_size_limit(self, tmp_path) -> None:
        path = tmp_path / "big.npy"
        np.save(path, np.zeros((1, 12, 5000), np.float32))
        with pytest.raises(PayloadTooLarge, match="field 'ecg' is 0.2 MiB; the limit is"):
            read_npy(path, RequestLimits(max_bytes=100_000))


LIMITS_NPY = RequestLimits()
