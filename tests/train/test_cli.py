"""``esi pretrain`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from esi.cli import app


def test_pretrain_command_runs_and_prints_where_results_are(make_data, tmp_path: Path) -> None:
    store, captions = make_data(16)
    out = tmp_path / "run"
    args = ["pretrain", "--config", "esi_test", "--store", str(store), "--captions", str(captions),
            "--epochs", "1", "--out", str(out), "--batch-size", "8", "--lr", "1e-3", "--warmup-epochs", "0",
            "--workers", "0", "--no-mlflow", "--quiet", "--shuffle-pairs", "0.25", "--lambda-cap", "0.5",
            "--folds", "all"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"run dir: {out}" in result.output
    assert f"final checkpoint: {out / 'model.pt'}" in result.output
    assert "mlflow run id: -" in result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["shuffle_pairs"], saved["lambda_cap"], saved["epochs"]) == (
        "esi_test", 0.25, 0.5, 1)

    # the saved settings file is a valid --config; a finished run resumes to a no-op
    again = CliRunner().invoke(app, ["pretrain", "--config", str(out / "config.json"), "--resume", "--quiet"])
    assert again.exit_code == 0, again.output
    assert "steps: 2 (all epochs done)" in again.output


def test_pretrain_command_reports_domain_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pretrain", "--config", "esi_test", "--captions", "c.parquet",
                                      "--no-mlflow"])
    assert result.exit_code == 2
    assert "store is not set" in result.output
    bad = CliRunner().invoke(app, ["pretrain", "--config", "esi_test", "--store", str(tmp_path),
                                   "--captions", str(tmp_path / "none.parquet"), "--precision", "fp16"])
    assert bad.exit_code == 2 and "precision" in bad.output


def test_save_config_writes_json_and_exits(tmp_path: Path) -> None:
    path = tmp_path / "pretrain.json"
    result = CliRunner().invoke(app, ["pretrain", "--config", "esi_cpu", "--epochs", "3", "--folds", "1-8",
                                      "--model-override", "embed_dim=64", "--length-buckets", "4",
                                      "--save-config", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data["folds"] == [1, 2, 3, 4, 5, 6, 7, 8] and data["model_overrides"] == {"embed_dim": 64}
    assert data["length_buckets"] == 4
    # without the flag the option keeps its default (random batches)
    plain = tmp_path / "plain.json"
    assert CliRunner().invoke(app, ["pretrain", "--save-config", str(plain)]).exit_code == 0
    assert json.loads(plain.read_text())["length_buckets"] == 0
    bad = CliRunner().invoke(app, ["pretrain", "--length-buckets", "-1", "--save-config", str(plain)])
    assert bad.exit_code != 0 and "length-buckets" in bad.output


def test_pretrain_holds_out_folds_9_and_10_by_default(make_data) -> None:
    """Without --folds, a store with folds 1-10 pretrains on 1-8 (evaluation's test fold stays unseen), and the
    checkpoint records exactly which records it saw; --folds all opts in to every fold."""
    import torch

    from esi.data.store import open_store

    store, captions = make_data(20)
    out = store.parent / "run"
    common = ["pretrain", "--config", "esi_test", "--store", str(store), "--captions", str(captions), "--epochs",
              "1", "--batch-size", "4", "--no-mlflow", "--quiet"]
    res = CliRunner().invoke(app, [*common, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "pretraining on folds 1-8" in res.output
    extra = torch.load(out / "model.pt", weights_only=True)["extra"]
    manifest = open_store(store).manifest
    seen = set(manifest.loc[manifest["fold"] <= 8, "record_id"].astype(str))
    assert extra["pretrain"]["config"]["folds"] == list(range(1, 9))
    assert set(extra["provenance"]["record_ids"]) == seen and extra["provenance"]["n_records"] == len(seen)
    res = CliRunner().invoke(app, [*common, "--out", str(store.parent / "run_all"), "--folds", "all"])
    assert res.exit_code == 0, res.output
    extra = torch.load(store.parent / "run_all" / "model.pt", weights_only=True)["extra"]
    assert extra["pretrain"]["config"]["folds"] is None and extra["provenance"]["n_records"] == 20
