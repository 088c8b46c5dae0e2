"""The model card counts mixed-in stores as pretraining data (minus the real benchmark's evaluation part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from esi.data.real_split import REAL_ROOT, load_split, part_of
from esi.data.store import EcgStore
from esi.registry.card import store_provenance


@pytest.fixture(scope="module")
def real_cpsc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from esi.data.prepare import prepare

    out = tmp_path_factory.mktemp("card") / "store"
    prepare("wfdb", REAL_ROOT / "cpsc2018", out, progress=False, workers=0)
    return out


def test_mixed_real_records_are_counted_and_the_card_is_not_synthetic_only(real_cpsc: Path) -> None:
    ids = EcgStore(real_cpsc).manifest["record_id"].astype(str)
    split = load_split()
    n_pretrain = sum(part_of(i, split) != "eval" for i in ids)
    alone = store_provenance(real_cpsc, None)
    mixed = store_provenance(real_cpsc, None, [{"store": str(real_cpsc), "captions": "unused"}])
    assert mixed["n_records"] == alone["n_records"] + n_pretrain
    assert mixed["sources"]["cpsc2018 (mixed in)"] == n_pretrain
    assert mixed["mix"] == [{"store": str(real_cpsc), "n_records": n_pretrain}]
    assert mixed["synthetic_only"] is False


def test_an_unreadable_mixed_store_is_reported_not_fatal(real_cpsc: Path, tmp_path: Path) -> None:
    info = store_provenance(real_cpsc, None, [{"store": str(tmp_path / "gone"), "captions": "x"}])
    assert info["available"] and "gone" in info["mix_missing"][0]
