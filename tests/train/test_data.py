"""Pretraining data: captions join, quarantine, missing captions, misaligned pairs, token cache, sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from esi.errors import DataError, DatasetNotFoundError
from esi.train.config import AugmentConfig
from esi.train.data import (
    PretrainDataset,
    ResumableDistributedSampler,
    augment_signal,
    collate,
    load_captions,
    misalignment,
    tokenize_captions,
)


class TestCaptions:
    def test_load(self, make_data) -> None:
        _, captions = make_data(8)
        table = load_captions(captions)
        assert len(table) == 8 and table["r002"].endswith("V1.")

    def test_missing_file_and_column(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match="esi caption"):
            load_captions(tmp_path / "nope.parquet")
        pd.DataFrame({"record_id": ["a"], "text": ["x"]}).to_parquet(tmp_path / "bad.parquet")
        with pytest.raises(DataError, match="caption"):
            load_captions(tmp_path / "bad.parquet")

    def test_conflicting_duplicates(self, tmp_path: Path) -> None:
        pd.DataFrame({"record_id": ["a", "a"], "caption": ["x", "y"]}).to_parquet(tmp_path / "d.parquet")
        with pytest.raises(DataError, match="more than one caption"):
            load_captions(tmp_path / "d.parquet")


class TestDataset:
    def test_quarantined_records_are_excluded(self, make_data) -> None:
        store, captions = make_data(12, quarantine=["r002", "r005"])
        ds = PretrainDataset(store, load_captions(captions))
        assert len(ds) == 10 and ds.n_quarantined == 2
        assert "r002" not in ds.record_ids and "r005" not in ds.record_ids

    def test_missing_captions_error_names_count_and_fix(self, make_data) -> None:
        store, captions = make_data(12, skip_captions=[1, 4, 7])
        with pytest.raises(DataError, match=r"3 of 12 .*no caption.*--skip-missing-captions"):
            PretrainDataset(store, load_captions(captions))
        ds = PretrainDataset(store, load_captions(captions), missing_captions="skip")
        assert len(ds) == 9 and ds.n_missing_captions == 3

    def test_folds_and_limit(self, make_data) -> None:
        store, captions = make_data(20)
        ds = PretrainDataset(store, load_captions(captions), folds=[1, 2, 3])
        assert len(ds) == 6  # folds cycle 1..10
        assert len(PretrainDataset(store, load_captions(captions), limit=5)) == 5

    def test_items_pair_signal_and_caption(self, make_data, test_model_tokenize) -> None:
        store, captions = make_data(8)
        table = load_captions(captions)
        ds = PretrainDataset(store, table, augment=None)
        out = test_model_tokenize(ds.texts, max_length=64)
        ds.set_tokens(out["input_ids"], out["attention_mask"])
        item = ds[3]
        assert item["signal"].shape == (12, 1000) and item["signal"].dtype == torch.float32
        expected = test_model_tokenize([table["r003"]], max_length=64)["input_ids"][0]
        n = int(item["attention_mask"].sum())
        assert torch.equal(item["input_ids"][:n].long(), expected[:n])
        batch = collate([ds[i] for i in range(4)])
        assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())


class TestShufflePairs:
    @pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
    def test_fraction_is_exact_and_deterministic(self, fraction: float) -> None:
        index = misalignment(200, fraction, seed=3)
        assert int((index != np.arange(200)).sum()) == round(fraction * 200)
        assert sorted(index.tolist()) == list(range(200))  # a permutation: every caption used once
        assert np.array_equal(index, misalignment(200, fraction, seed=3))
        if 0 < fraction < 1:
            assert not np.array_equal(index, misalignment(200, fraction, seed=4))

    def test_dataset_pairs_misaligned_captions(self, make_data) -> None:
        store, captions = make_data(40)
        table = load_captions(captions)
        ds = PretrainDataset(store, table, shuffle_pairs=0.25, seed=1)
        wrong = [i for i in range(len(ds)) if ds.caption_of(i) != table[ds.record_ids[i]]]
        assert ds.n_misaligned == 10
        assert len(wrong) == 10  # captions differ per record (demographics), so every moved pair is wrong


def test_augmentation_is_keyed_and_bounded() -> None:
    x = np.ones((12, 1000), np.float32)
    cfg = AugmentConfig(amplitude_scale=0.2, noise_std=0.0, max_shift=50, crop=800)
    a = augment_signal(x, np.random.default_rng([0, 1, 2]), cfg)
    b = augment_signal(x, np.random.default_rng([0, 1, 2]), cfg)
    c = augment_signal(x, np.random.default_rng([0, 1, 3]), cfg)
    assert a.shape == (12, 800) and np.array_equal(a, b) and not np.array_equal(a, c)
    nonzero = a[a != 0]
    assert 0.8 <= nonzero.min() and nonzero.max() <= 1.2 and np.allclose(nonzero, nonzero[0])
    assert (a == 0).sum() <= 12 * 50  # the shift zero-fills at most max_shift samples per lead


def test_token_cache_is_reused_and_keyed_on_captions(tmp_path: Path) -> None:
    from esi.models import create_model

    model = create_model("esi_test")
    calls = []
    original = model.tokenize

    def counting(texts, max_length=None):
        calls.append(len(texts))
        return original(texts, max_length=max_length)

    model.tokenize = counting
    texts = ["sinus rhythm", "atrial fibrillation with rapid ventricular response"]
    ids, mask = tokenize_captions(model, texts, 32, tmp_path)
    files = list(tmp_path.glob("tokens-*.pt"))
    assert len(files) == 1 and ids.shape[0] == 2 and mask.dtype == torch.uint8
    n_calls = len(calls)
    ids2, _ = tokenize_captions(model, texts, 32, tmp_path)
    assert torch.equal(ids, ids2)
    assert [c for c in calls[n_calls:] if c != 1] == []  # only the one-text key probe, no re-tokenisation
    tokenize_captions(model, [*texts, "left bundle branch block"], 32, tmp_path)
    assert len(list(tmp_path.glob("tokens-*.pt"))) == 2
    assert tokenize_captions(model, ["never seen"], 32, tmp_path, build=False) is None


def test_sampler_resume_continues_the_same_order() -> None:
    data = list(range(50))
    full = ResumableDistributedSampler(data, num_replicas=2, rank=1, seed=7)
    full.set_epoch(3)
    order = list(full)
    part = ResumableDistributedSampler(data, num_replicas=2, rank=1, seed=7)
    part.set_epoch(3)
    part.set_start(10)
    assert list(part) == order[10:] and len(part) == len(order) - 10
    # ranks partition the epoch's permutation
    r0 = ResumableDistributedSampler(data, num_replicas=2, rank=0, seed=7)
    r0.set_epoch(3)
    assert sorted(list(r0) + order) == sorted(set(list(r0) + order)) and len(list(r0)) == 25


def test_length_grouped_batches_partition_the_epoch_and_resume() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 129, size=96)
    data = list(range(96))

    def ranks(epoch: int, start: int = 0, buckets: int = 4) -> list[list[int]]:
        out = []
        for rank in (0, 1):
            s = ResumableDistributedSampler(data, num_replicas=2, rank=rank, seed=5, lengths=lengths,
                                            batch_size=4, bucket_batches=buckets)
            s.set_epoch(epoch)
            s.set_start(start)
            out.append(list(s))
        return out

    r0, r1 = ranks(1)
    assert sorted(r0 + r1) == data  # every record once per epoch over both ranks
    # rank 0's batch j and rank 1's batch j together form one global batch of similar lengths
    def spread(a: list[int], b: list[int]) -> float:
        return float(np.mean([np.ptp(lengths[a[j:j + 4] + b[j:j + 4]]) for j in range(0, len(a), 4)]))

    assert spread(r0, r1) < 0.5 * spread(*ranks(1, buckets=0))  # vs the random batches of the same epoch
    assert ranks(1, start=8) == [r0[8:], r1[8:]]  # resuming skips a prefix
    assert ranks(1) == [r0, r1] and ranks(2) != [r0, r1]  # deterministic per epoch, new order each epoch
