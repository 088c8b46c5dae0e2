"""evaluate() end to end on a small store with the tiny test model: files, MLflow, cache, model references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from esi.data.store import EcgStore
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


def test_all_modes_write_metrics_table_and_plots(full_run, labelled_store: Path) -> None:
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
        low, high = modes[key]["ci95"]
        assert low <= modes[key]["macro_auc"] <= high or modes[key]["macro_auc"] in (low, high)
    assert set(modes["linear_probe"]["fractions"]) == {"0.1", "1"}
    # both prompt schemes scored; the headline is the caption scheme
    assert set(modes["zero_shot"]["schemes"]) == {"caption", "names"}
    assert modes["zero_shot"]["macro_auc"] == modes["zero_shot"]["schemes"]["caption"]["macro_auc"]
    # the from-scratch baseline chose its lr on validation from the whole grid
    scratch = modes["supervised_scratch"]
    assert set(scratch["val_auc_by_lr"]) == {"0.0003", "0.001", "0.003"}
    assert scratch["best_val_macro_auc"] == max(scratch["val_auc_by_lr"].values())
    # identification pool: every test-fold record of the store, counted here from the manifest
    m = EcgStore(labelled_store).manifest
    test_rows = m[m["fold"] == 10]
    ident = modes["identification"]
    assert ident["pool_records"] == len(test_rows)
    assert ident["pool_subjects"] == test_rows["subject_id"].nunique()
    assert metrics["benchmark"]["fold_sizes"]["10"] == len(test_rows)
    table = (out / "report.md").read_text()
    assert "Table 2. Arrhythmia" in table and "random init (esi_test), linear probe" in table
    assert "zero-shot (caption prompts)" in table and "Table 4. 1-shot subject identification" in table
    assert "ESI" not in table.replace("ESI_HOME", "")  # method names say what was evaluated
    assert "contamination not checked" in table  # an in-memory model has no pretraining record
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
    from esi.registry.tracking import ensure_experiment

    # An experiment with its artifacts under ESI_HOME (the Default experiment would write ./mlruns).
    experiment = ensure_experiment(mlflow.MlflowClient(), "esi-eval-test")
    with mlflow.start_run(experiment_id=experiment) as run:
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
            "zero-shot,linear-probe,identification",
            "--fractions",
            "0.5,1",
            "--seeds",
            "0,1",
            "--segment",
            "0.4",
            "--bootstrap",
            "0",
            "--out",
            str(tmp_path / "r"),
            "--no-mlflow",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output  # --bootstrap 0: no CI, everywhere (the 2-seed envelope included)
    assert "zero-shot (caption prompts)" in res.output and "metrics.json" in res.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["modes"]["linear_probe"]["fractions"]["0.5"]["ci95"] == [None, None]
    assert metrics["modes"]["zero_shot"]["n_bootstrap"] == 0
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


def test_report_merges_runs_and_keeps_published_figures_apart(full_run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from esi.cli import app

    other = json.loads((full_run.out / "metrics.json").read_text())
    other["benchmark"]["task"] = "form"  # a second run on another task: a second column
    other["modes"]["zero_shot"]["skipped_classes"] = ["NDT"]
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "metrics.json").write_text(json.dumps(other))
    res = CliRunner().invoke(app, ["report", str(full_run.out), str(tmp_path / "second"), "--paper",
                                   "--out", str(tmp_path / "tables.md")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "tables.md").read_text()
    measured, published = text.split("## Published figures (not measured here)")
    assert "| Method | ptbxl / superdiagnostic | ptbxl / form |" in measured  # merged: one column per run
    assert "NDT have a single label value" in measured  # skipped classes in the footnotes
    assert "0.932" not in measured and "0.932" in published  # published ESI linear probe, never in measured
    assert "Published Table 5" in published
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "metrics.json" in bad.output
