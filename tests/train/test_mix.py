"""Mixing another captioned store into pretraining; the real benchmark's evaluation part never enters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esi.data.real_split import REAL_ROOT, load_split, part_of
from esi.data.store import EcgStore, atomic_write_parquet
from esi.train.config import PretrainConfig
from esi.train.data import PretrainDataset, load_captions


@pytest.fixture(scope="module")
def real_part(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped CPSC 2018 benchmark records as a store, every record captioned."""
    from esi.data.prepare import prepare

    root = tmp_path_factory.mktemp("mix")
    store = root / "store"
    prepare("wfdb", REAL_ROOT / "cpsc2018", store, progress=False, workers=0)
    ids = EcgStore(store).manifest["record_id"].astype(str)
    captions = root / "captions.parquet"
    atomic_write_parquet(captions, pd.DataFrame({"record_id": ids, "caption": [f"caption of {i}" for i in ids]}))
    return store, captions


def test_mixed_records_are_added_and_evaluation_records_are_never_used(make_data, real_part) -> None:
    main, main_captions = make_data(16, n_samples=5000)
    store, captions = real_part
    all_ids = EcgStore(store).manifest["record_id"].astype(str).tolist()
    split = load_split()
    parts = [part_of(i, split) for i in all_ids]
    assert "eval" in parts and "pretrain" in parts  # the fixture exercises both
    ds = PretrainDataset(main, load_captions(main_captions), mix=[(store, load_captions(captions))])
    mixed = ds.record_ids[16:]
    assert sorted(mixed) == sorted(i for i, p in zip(all_ids, parts, strict=True) if p == "pretrain")
    assert not {i for i, p in zip(all_ids, parts, strict=True) if p == "eval"} & set(ds.record_ids)
    assert ds.n_mixed == len(mixed) and ds.n_eval_excluded == parts.count("eval")


def test_a_mixed_position_reads_its_own_store_and_caption(make_data, real_part) -> None:
    import torch

    main, main_captions = make_data(16, n_samples=5000)
    store, captions = real_part
    ds = PretrainDataset(main, load_captions(main_captions), mix=[(store, load_captions(captions))])
    ds.set_tokens(torch.zeros((len(ds.texts), 4), dtype=torch.long), torch.ones((len(ds.texts), 4), dtype=torch.long))
    pos = 16
    rid = ds.record_ids[pos]
    real = EcgStore(store)
    row = int(np.flatnonzero(real.manifest["record_id"].astype(str).to_numpy() == rid)[0])
    assert np.allclose(ds[pos]["signal"].numpy(), real.signal(row))
    assert ds.caption_of(pos) == f"caption of {rid}"


def test_provenance_lists_the_mixed_records(make_data, real_part) -> None:
    from esi.train.loop import pretraining_provenance

    main, main_captions = make_data(16, n_samples=5000)
    store, captions = real_part
    cfg = PretrainConfig(store=str(main), captions=str(main_captions),
                         mix=[{"store": str(store), "captions": str(captions)}]).validate()
    ds = PretrainDataset(main, load_captions(main_captions), mix=[(store, load_captions(captions))])
    prov = pretraining_provenance(ds, cfg)
    assert prov["mix"] == [str(store)]
    assert set(prov["record_ids"]) == set(ds.record_ids) and len(prov["record_ids"]) > 16


def test_stores_of_another_length_are_refused(make_data, real_part) -> None:
    from esi.errors import DataError

    main, main_captions = make_data(16, n_samples=1000)
    store, captions = real_part
    with pytest.raises(DataError, match="--duration"):
        PretrainDataset(main, load_captions(main_captions), mix=[(store, load_captions(captions))])


def test_mix_entries_are_checked() -> None:
    from esi.errors import ConfigError

    with pytest.raises(ConfigError, match="mix"):
        PretrainConfig(mix=[{"store": "x"}]).validate()
