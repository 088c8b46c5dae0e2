"""evaluate() end to end on a small store with the tiny test model: files, MLflow, cache, model references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from esi.errors import DatasetNotFoundError, EvaluationError, ModelNotFoundError
from esi.evaluation.finetune import FinetuneConfig
from esi.evaluation.run import evaluate, parse_modes, resolve_model

QUICK = {
    "fractions": (0.1, 1.0),
    "seeds": (0,),
    "c_grid": (0.1, 1.0),
    "n_bootstrap": 20,
    "identification_segment_s": 0.4,
    "progress": False,
    "finetune_config": FinetuneConfig(epochs=2, max_steps_per_epoch=2, batch_size=8, max_train_records=16),
}


@pytest.fixture(scope="module")
def model():
    import torch

    from esi.models import create_model

    torch.manual_seed(0)
    return create_model("esi_test")


@pytest.fixture(scope="module")
def full_run(model, labelled_store: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    return evaluate(model, "ptbxl", labelled_store, "superdiagnostic", "all", out, **QUICK)


def test_all_modes_write_metrics_table_and_plots(full_run) -> None:
    out = full_run.out
    names = {p.name for p in full_run.files}
    assert {"metrics.json", "report.md", "roc_curves.png", "per_class_auc.png", "label_fraction.png"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    modes = metrics["modes"]
    assert set(modes) == {
        "zero_shot",
        "linear_probe",
        "linear_probe_random_init",
        "finetune",
        "supervised_scratch",
        "identification",
        "mmd",
    }
    for key in ("zero_shot", "finetune", "supervised_scratch"):
        assert 0.0 <= modes[key]["macro_auc"] <= 1.0
        low, high = modes[key]["ci95"]
        assert low <= high
    assert set(modes["linear_probe"]["fractions"]) == {"0.1", "1"}
    assert modes["identification"]["pairing"] == "records" or modes["identification"]["n_subjects"] >= 2
    assert modes["mmd"]["mmd2"] >= 0.0
    assert metrics["benchmark"]["records"]["test"] > 0
    table = (out / "report.md").read_text()
    assert "| ESI zero-shot | 0% |" in table and "Random init, linear probe" in table
    assert "Identification (1-shot)" in table
    assert (out / "roc_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_run_is_logged_to_mlflow(full_run) -> None:
    import mlflow

    from esi.settings import get_settings

    assert full_run.mlflow_run_id
    client = mlflow.MlflowClient(get_settings().tracking_uri)
    run = client.get_run(full_run.mlflow_run_id)
    assert run.data.params["benchmark"] == "ptbxl"
    assert "zero_shot_macro_auc" in run.data.metrics
    assert "linear_probe_100pct_macro_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(full_run.mlflow_run_id, "evaluation")}
    assert "evaluation/metrics.json" in artifacts and "evaluation/report.md" in artifacts
    location = client.get_experiment(run.info.experiment_id).artifact_location
    assert str(get_settings().home.resolve()) in location  # artifacts under ESI_HOME, not ./mlruns


def test_embeddings_are_cached(full_run, model, labelled_store: Path, tmp_path: Path) -> None:
    again = evaluate(
        model,
        "ptbxl",
        labelled_store,
        "superdiagnostic",
        "zero-shot,identification",
        tmp_path,
        log_mlflow=False,
        **QUICK,
    )
    assert again.metrics["throughput"]["computed"] == 0 and again.metrics["throughput"]["cached"] > 0
    assert (
        again.metrics["modes"]["zero_shot"]["macro_auc"]
        == full_run.metrics["modes"]["zero_shot"]["macro_auc"]
    )


def test_checkpoint_and_mlflow_run_references(model, labelled_store: Path, tmp_path: Path) -> None:
    import mlflow

    from esi.models.checkpoint import save_checkpoint
    from esi.settings import get_settings

    ckpt = save_checkpoint(tmp_path / "ckpt" / "model.pt", model)
    direct = evaluate(
        model,
        "ptbxl",
        labelled_store,
        "superdiagnostic",
        "zero-shot",
        tmp_path / "a",
        log_mlflow=False,
        **QUICK,
    )
    by_path = evaluate(
        str(ckpt),
        "ptbxl",
        labelled_store,
        "superdiagnostic",
        "zero-shot",
        tmp_path / "b",
        log_mlflow=False,
        **QUICK,
    )
    assert by_path.metrics["model"]["digest"] == direct.metrics["model"]["digest"]
    assert (
        by_path.metrics["modes"]["zero_shot"]["macro_auc"]
        == direct.metrics["modes"]["zero_shot"]["macro_auc"]
    )
    mlflow.set_tracking_uri(get_settings().tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(ckpt), artifact_path="checkpoint")
    loaded, info = resolve_model(f"runs:/{run.info.run_id}/checkpoint")
    assert info["kind"] == "mlflow"
    a, b = model.state_dict(), loaded.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    # A registered version, by alias.
    client = mlflow.MlflowClient()
    client.create_registered_model("esi-eval-test")
    version = client.create_model_version(
        "esi-eval-test", f"{run.info.artifact_uri}/checkpoint", run.info.run_id
    )
    client.set_registered_model_alias("esi-eval-test", "champion", version.version)
    by_alias, info = resolve_model("models:/esi-eval-test@champion")
    assert info["checkpoint"].endswith("model.pt")
    assert all(np.array_equal(a[k].numpy(), by_alias.state_dict()[k].numpy()) for k in a)


def test_bad_inputs_are_domain_errors(labelled_store: Path, tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="unknown mode"):
        parse_modes("zero-shot,telepathy")
    with pytest.raises(DatasetNotFoundError):
        evaluate("esi_test", "ptbxl", tmp_path / "missing", "superdiagnostic", "zero-shot", tmp_path)
    with pytest.raises(ModelNotFoundError, match="not a checkpoint path"):
        resolve_model("no_such_model")
    with pytest.raises(ModelNotFoundError):
        resolve_model("runs:/0123456789abcdef/checkpoint")
    assert parse_modes("all")[0] == "zero-shot"
    assert parse_modes("fine-tune,zero_shot") == ["finetune", "zero-shot"]


def test_cli(labelled_store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from esi.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "esi_test",
            "--benchmark",
            "ptbxl",
            "--root",
            str(labelled_store),
            "--task",
            "superdiagnostic",
            "--modes",
            "zero-shot,identification",
            "--segment",
            "0.4",
            "--bootstrap",
            "10",
            "--out",
            str(tmp_path / "r"),
            "--no-mlflow",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ESI zero-shot" in res.output and "metrics.json" in res.output
    bad = runner.invoke(app, ["evaluate", "--model", "esi_test", "--root", str(tmp_path / "nope"), "--quiet"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_dataset_folder_is_prepared_once_into_a_cached_store(real_dir: Path) -> None:
    from esi.evaluation.run import resolve_store
    from esi.settings import get_settings

    store = resolve_store("ptbxl", real_dir / "ptbxl", progress=False)
    assert Path(store.path).is_relative_to(get_settings().store_dir)
    assert len(store) == 12
    stamp = (Path(store.path) / "header.json").stat().st_mtime_ns
    again = resolve_store("ptbxl", real_dir / "ptbxl", progress=False)
    assert again.path == store.path and (Path(store.path) / "header.json").stat().st_mtime_ns == stamp
    with pytest.raises(EvaluationError, match="needs a prepared store"):
        resolve_store("custom", real_dir / "ptbxl")
