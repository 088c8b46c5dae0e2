"""The on-disk store and ``prepare``: round trip on real records, resume, rejects, sharding, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from esi.data.prepare import prepare
from esi.data.preprocess import PreprocessConfig
from esi.data.readers import get_reader
from esi.data.record import LEADS
from esi.data.store import SCHEMA_VERSION, EcgStore, atomic_write_json
from esi.errors import DatasetNotFoundError, StoreError


@pytest.fixture(scope="module")
def ptbxl_store(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "ptbxl"
    summary = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=4)
    assert summary.complete
    return out


def test_round_trip_matches_reader(ptbxl_store: Path, real_dir: Path) -> None:
    store = EcgStore(ptbxl_store)
    refs = get_reader("ptbxl").list_refs(real_dir / "ptbxl")
    assert len(store) == len(refs) and store.rejects().empty
    assert store.header["schema_version"] == SCHEMA_VERSION
    assert store.leads == list(LEADS) and store.fs == 500 and store.n_samples == 5000
    m = store.manifest
    assert m["record_id"].is_unique
    # the stored signal equals the reader's record after the same preprocessing (float16 precision)
    from esi.data.preprocess import preprocess

    rec = get_reader("ptbxl").read(refs[0])
    expected = preprocess(rec, PreprocessConfig())[0]
    i = int(np.flatnonzero(m["record_id"].to_numpy() == expected.record_id)[0])
    got = store.signal(i)
    assert got.shape == (12, 5000) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected.signal, atol=2e-3, rtol=1e-2)
    # metadata and harmonised conditions survive
    row = m.iloc[i]
    assert row["age"] == rec.age and row["sex"] == rec.sex and int(row["fold"]) == rec.fold
    assert store.labels(i) == rec.labels
    assert store.conditions(i), "PTB-XL SCP codes must map to vocabulary conditions"


def test_records_from_100hz_are_resampled(ptbxl_store: Path) -> None:
    m = EcgStore(ptbxl_store).manifest
    assert set(m["original_fs"]) == {100.0, 500.0}  # ids 1-4, 6-10 ship only records100 in the fixture


def test_batches_and_dataset(ptbxl_store: Path) -> None:
    from esi.data.dataset import EcgStoreDataset

    store = EcgStore(ptbxl_store)
    seen = [idx for idx, arr in store.iter_batches(batch_size=5) for _ in [arr.shape]]
    assert np.concatenate(seen).tolist() == list(range(len(store)))
    # any order, across shard boundaries (shard_size=4), gives the same arrays as row-by-row reads
    order = [7, 0, 1, 2, 3, 4, 12, 5, 6, 11]
    order = [i for i in order if i < len(store)]
    got = np.concatenate([arr for _, arr in store.iter_batches(batch_size=3, indices=order)])
    np.testing.assert_array_equal(got, store.signals(order))
    ds = EcgStoreDataset(store)
    item = ds[0]
    assert tuple(item["signal"].shape) == (12, 5000)
    assert item["record_id"] == store.manifest["record_id"].iat[0]


def test_quarantine_is_honoured(ptbxl_store: Path, tmp_path: Path) -> None:
    import shutil

    import pandas as pd

    from esi.data.dataset import EcgStoreDataset

    copy = tmp_path / "store"
    shutil.copytree(ptbxl_store, copy)
    store = EcgStore(copy)
    bad = store.manifest["record_id"].iloc[:2].tolist()
    pd.DataFrame({"record_id": bad, "failed": ["nan_lead", "flat_lead"]}).to_parquet(store.quarantine_path)
    store = EcgStore(copy)
    assert store.quarantined_ids() == set(bad)
    ds = EcgStoreDataset(store)
    assert len(ds) == len(store) - 2
    assert not {ds[i]["record_id"] for i in range(len(ds))} & set(bad)
    assert len(EcgStoreDataset(store, exclude_quarantined=False)) == len(store)


def test_resume_skips_finished_shards(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    first = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3, shard=(0, 2))
    assert not first.complete and first.shards_done_now >= 1
    with pytest.raises(StoreError, match="incomplete"):
        EcgStore(out)
    second = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3)
    assert second.complete
    assert second.shards_skipped == first.shards_done_now
    assert second.shards_done_now == second.shards_total - first.shards_done_now
    again = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, shard_size=3)
    assert again.shards_done_now == 0 and again.shards_skipped == again.shards_total
    assert len(EcgStore(out)) == len(get_reader("ptbxl").list_refs(real_dir / "ptbxl"))


def test_changed_settings_refuse_to_mix(real_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    prepare("ptbxl", real_dir / "ptbxl", out, progress=False, limit=2)
    with pytest.raises(StoreError, match="--overwrite"):
        prepare("ptbxl", real_dir / "ptbxl", out, progress=False, limit=2,
                config=PreprocessConfig(highpass_hz=1.0))
    s = prepare("ptbxl", real_dir / "ptbxl", out, progress=False, limit=2, overwrite=True,
                config=PreprocessConfig(highpass_hz=1.0))
    assert s.complete and EcgStore(out).header["preprocess"]["highpass_hz"] == 1.0


def test_corrupt_records_become_rejects(corrupt_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    s = prepare("wfdb", corrupt_root, out, progress=False)
    assert s.complete and s.windows_written == 1 and s.rejected == 4
    rejects = EcgStore(out).rejects().set_index("record_id")
    reasons = {rid.split("/")[-1]: reason for rid, reason in rejects["reason"].items()}
    assert set(reasons) == {"truncated", "eleven", "badformat", "nodat"}
    assert "12" in reasons["eleven"] or "lead" in reasons["eleven"].lower()
    assert "format" in reasons["badformat"].lower()
    # every reject names the file at fault and the fix
    assert all(str(corrupt_root) in p for p in rejects["path"])
    assert all("file: " in r and "fix: " in r for r in reasons.values())


def test_workers_give_the_same_store(real_dir: Path, tmp_path: Path) -> None:
    a = prepare("ptbxl", real_dir / "ptbxl", tmp_path / "a", progress=False, limit=6)
    b = prepare("ptbxl", real_dir / "ptbxl", tmp_path / "b", progress=False, limit=6, workers=2)
    assert a.windows_written == b.windows_written == 6
    sa, sb = EcgStore(tmp_path / "a"), EcgStore(tmp_path / "b")
    assert sa.manifest["record_id"].tolist() == sb.manifest["record_id"].tolist()
    np.testing.assert_array_equal(sa.signals(range(6)), sb.signals(range(6)))


def test_open_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        EcgStore(tmp_path / "missing")
    bad = tmp_path / "future"
    bad.mkdir()
    atomic_write_json(bad / "header.json", {"schema_version": SCHEMA_VERSION + 1, "complete": True})
    with pytest.raises(StoreError, match="schema"):
        EcgStore(bad)


def test_challenge_and_mimic_sources(real_dir: Path, mimic_root: Path, tmp_path: Path) -> None:
    s = prepare("challenge", real_dir / "cpsc2018", tmp_path / "cpsc", progress=False)
    assert s.complete and s.windows_written == 4
    store = EcgStore(tmp_path / "cpsc")
    assert all(json.loads(c) for c in store.manifest["conditions"])
    s = prepare("mimic", mimic_root, tmp_path / "mimic", progress=False)
    assert s.complete and s.windows_written == 2
    m = EcgStore(tmp_path / "mimic").manifest
    assert m["report"].str.len().min() > 0  # statements stay in the report text, mapped or not


def test_cli_prepare_and_info(real_dir: Path, tmp_path: Path) -> None:
    from esi.cli import app

    out = tmp_path / "store"
    runner = CliRunner()
    res = runner.invoke(app, ["data", "prepare", "--source", "ptbxl", "--root", str(real_dir / "ptbxl"),
                              "--out", str(out), "--quiet", "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "store complete" in res.output
    res = runner.invoke(app, ["data", "info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["records"] == len(EcgStore(out)) and info["rejects"] == 0
    assert sum(info["folds"].values()) + info["records_without_fold"] == info["records"]
    res = runner.invoke(app, ["data", "info", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no esi store" in res.output.lower()


def test_write_store_from_arrays_round_trips(tmp_path: Path) -> None:
    from esi.data.store import write_store

    rng = np.random.default_rng(0)
    sig = rng.normal(0, 0.3, (5, 12, 1000)).astype(np.float32)
    rows = [{"record_id": f"r{i}", "fold": 1 + i, "labels": {"NORM": 100.0}} for i in range(5)]
    store = EcgStore(write_store(tmp_path / "s", rows, sig, shard_size=2))
    assert len(store) == 5 and store.n_samples == 1000 and store.header["n_shards"] == 3
    np.testing.assert_allclose(store.signals(range(5)), sig, atol=2e-3)
    assert store.labels(3) == {"NORM": 100.0} and store.conditions(3) == {}
    assert store.manifest["fold"].tolist() == [1, 2, 3, 4, 5]
    # streamed shards, and a manifest-only store
    stream = (sig[k:k + 2] for k in range(0, 5, 2))
    assert len(EcgStore(write_store(tmp_path / "t", rows, stream))) == 5
    only = EcgStore(write_store(tmp_path / "m", rows))
    assert len(only) == 5 and only.header["n_shards"] == 0
    with pytest.raises(StoreError, match="manifest rows"):
        write_store(tmp_path / "bad", rows[:4], sig)
