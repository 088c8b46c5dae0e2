"""Test-fold contamination: pretraining records from the checkpoint, refusal (exit 2), the loud override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esi.data.store import EcgStore
from esi.evaluation.provenance import (
    ContaminationError,
    check_contamination,
    pretraining_provenance,
    store_digest,
)


def _checkpoint(tmp_path: Path, name: str, **extra) -> Path:
    import torch

    from esi.models import create_model
    from esi.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path / name / "model.pt", create_model("esi_test"), **extra)


def _pretrain_extra(store: Path, folds) -> dict:
    # what esi/train/loop.py writes today: extra["pretrain"]["config"] with the store and the folds
    return {"pretrain": {"config": {"store": str(store), "folds": folds, "model": "esi_test"}}}


def test_provenance_from_the_pretrain_config(labelled_store: Path) -> None:
    store = EcgStore(labelled_store)
    prov = pretraining_provenance(_pretrain_extra(labelled_store, [1, 2, 3, 4, 5, 6, 7, 8]))
    m = store.manifest
    want = set(m.loc[m["fold"].isin(range(1, 9)), "record_id"].astype(str))
    assert prov.status == "known" and prov.record_ids == want
    test_ids = set(m.loc[m["fold"] == 10, "record_id"].astype(str))
    assert check_contamination(prov, test_ids)["overlap"] == 0
    every = pretraining_provenance(_pretrain_extra(labelled_store, None))  # folds null: all records
    assert every.record_ids == set(m["record_id"].astype(str))
    with pytest.raises(ContaminationError, match=r"6 of 6 test records"):
        check_contamination(every, test_ids)
    allowed = check_contamination(every, test_ids, allow=True)
    assert allowed["allowed_overlap"] and allowed["overlap"] == 6


def test_explicit_provenance_wins(labelled_store: Path) -> None:
    store = EcgStore(labelled_store)
    ids = ["ptbxl/1", "ptbxl/2"]
    prov = pretraining_provenance({"provenance": {"record_ids": ids}, **_pretrain_extra(labelled_store, None)})
    assert prov.record_ids == set(ids) and "record ids" in prov.source
    by_digest = pretraining_provenance({"provenance": {"store_digest": store_digest(store), "folds": [10]}}, store)
    assert by_digest.record_ids == set(store.manifest.loc[store.manifest["fold"] == 10, "record_id"].astype(str))
    other = pretraining_provenance({"provenance": {"store_digest": "0" * 16, "folds": [10]}}, store)
    assert other.status == "unverifiable"
    assert pretraining_provenance({}).status == "unknown"


def test_evaluate_refuses_a_contaminated_test_split(labelled_store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from esi.cli import app

    dirty = _checkpoint(tmp_path, "dirty", **_pretrain_extra(labelled_store, None))
    clean = _checkpoint(tmp_path, "clean", **_pretrain_extra(labelled_store, list(range(1, 9))))
    common = ["evaluate", "--benchmark", "ptbxl", "--root", str(labelled_store), "--task", "superdiagnostic",
              "--modes", "zero-shot", "--bootstrap", "0", "--no-mlflow", "--quiet"]
    runner = CliRunner()
    res = runner.invoke(app, [*common, "--model", str(dirty), "--out", str(tmp_path / "r1")])
    assert res.exit_code == 2 and "pretraining set" in res.output and "--allow-contaminated" in res.output
    assert not (tmp_path / "r1" / "metrics.json").exists()
    res = runner.invoke(app, [*common, "--model", str(dirty), "--out", str(tmp_path / "r2"), "--allow-contaminated"])
    assert res.exit_code == 0, res.output
    assert "CONTAMINATED" in (tmp_path / "r2" / "report.md").read_text()
    assert json.loads((tmp_path / "r2" / "metrics.json").read_text())["contamination"]["allowed_overlap"]
    res = runner.invoke(app, [*common, "--model", str(clean), "--out", str(tmp_path / "r3"), "--modes", "mmd"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "r3" / "metrics.json").read_text())
    assert metrics["contamination"]["status"] == "known" and metrics["contamination"]["overlap"] == 0
    # the MMD reference defaults to the pretraining set the checkpoint names (folds 1-8: 48 records)
    mmd = metrics["modes"]["mmd"]
    assert "pretraining set" in mmd["reference"] and mmd["n_reference"] == 48
