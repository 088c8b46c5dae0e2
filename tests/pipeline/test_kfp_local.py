"""``esi pipeline run --local``: the whole esi_full Kubeflow pipeline through kfp.local, end to end (CI runs it).

Small configuration (30 subjects x 3 records, the esi_test model, one epoch, a 12-document corpus, a gate the
tiny model passes, 100 bootstrap resamples) so it stays at a few minutes. The real-ECG benchmark is on (its
default) and whole: it is 383 records, and a cut would leave its headline conditions without positives.
Asserts what the user is promised: every step ran (shards in parallel), the real benchmark prepared, captioned,
mixed into pretraining and scored, its metrics on the registered champion and in its card, a built bento, scores
of the real sample records, and a summary with each step's time, where everything is, and the synthetic and
real-ECG headline figures.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from esi.cli import app

CORPUS = Path(__file__).resolve().parents[2] / "esi" / "cqa" / "corpus"
CONDITIONS = ("426783006", "164854000", "426177001", "164889003", "164865005", "54329005", "6374002", "59118001",
              "713426002", "164909002", "39732003", "445118002")
STEPS = ("prepare-plan", "prepare-shard", "prepare-merge", "prepare-real", "validate", "build-kb", "caption",
         "caption-real", "pretrain", "evaluate", "evaluate-real", "register", "promote", "build-bento", "score-plan",
         "score-shard", "score-merge")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    from esi.settings import get_settings

    base = tmp_path_factory.mktemp("kfp")
    corpus = base / "corpus"
    corpus.mkdir()
    for cid in CONDITIONS:
        shutil.copy(CORPUS / f"{cid}.md", corpus)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESI_HOME", str(base / "home"))  # its own MLflow and BentoML stores
        mp.delenv("BENTOML_HOME", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        get_settings.cache_clear()
        res = CliRunner().invoke(app, [
            "pipeline", "run", "--local", "--out", str(base / "run"), "--subjects", "30",
            "--records-per-subject", "3", "--epochs", "1", "--model", "esi_test", "-p", "shard_size=50",
            "-p", "batch_size=8", "-p", f"kb_corpus={corpus}", "-p", "score_shards=2",
            "-p", "promotion_gates=synthetic.superdiagnostic.zero_shot.macro_auc>=0.0", "-p", "eval_modes=zero-shot",
            "-p", "real_n_bootstrap=100", "--mix-real"])  # the intervals' resamples are most of evaluate-real's time
        tracking = get_settings().tracking_uri
    get_settings.cache_clear()
    os.environ.pop("BENTOML_HOME", None)
    return base, res, tracking


def test_every_step_ran_and_is_timed(pipeline_run) -> None:
    base, res, _ = pipeline_run
    assert res.exit_code == 0, res.output[-3000:]
    record = json.loads((base / "run" / "pipeline-run.json").read_text())
    assert set(record["steps"]) == set(STEPS)
    assert all(seconds > 0 for seconds in record["steps"].values())
    names = [t[0] for t in record["tasks"]]
    assert "prepare-shard" in names and "score-shard" in names
    # The ParallelFor fan-outs, read from what they wrote (90 records, 50 per shard; 2 score shards): the task
    # list comes from kfp.local's log lines, which can miss an iteration's line, so it is not the evidence here.
    assert sorted(p.name for p in (base / "run" / "store" / "shards").iterdir()) == ["shard-00000", "shard-00001"]
    assert sorted(p.name for p in (base / "run" / "scores").iterdir() if p.name.startswith("shard-")) == [
        "shard-1-of-2", "shard-2-of-2"]
    for step in ("prepare-shard", "pretrain", "build-bento"):
        assert step in res.output
    assert "bentoml serve esi:latest" in res.output and "BENTOML_HOME=" in res.output


def test_ends_with_a_champion_a_bento_and_scores(pipeline_run) -> None:
    base, res, tracking = pipeline_run
    assert res.exit_code == 0, res.output[-3000:]
    outputs = json.loads((base / "run" / "pipeline-run.json").read_text())["outputs"]
    assert outputs["registered model"] == "models:/esi/1"
    assert outputs["served model"] == "models:/esi@champion" and outputs["promoted to champion"] == "True"
    assert outputs["bento"].startswith("esi:")
    from mlflow import MlflowClient

    assert str(MlflowClient(tracking_uri=tracking).get_model_version_by_alias("esi", "champion").version) == "1"
    assert tracking.startswith("sqlite:///") and str(base / "home") in tracking  # the run's own store
    bentos = base / "home" / "bentoml" / "bentos" / "esi"
    assert (bentos / outputs["bento"].split(":")[1] / "bento.yaml").is_file()
    total = json.loads((Path(outputs["scores"]) / "summary-all.json").read_text())
    assert total["records"] >= 10 and len(total["shards"]) == 2  # the real sample records, two shards
    for report in ("validation report", "evaluation report", "evaluation report (HTML artifact)",
                   "real-ECG evaluation report", "real-ECG evaluation report (HTML)"):
        assert Path(outputs[report]).is_file(), report


def test_real_benchmark_is_mixed_in_scored_and_registered(pipeline_run) -> None:
    from mlflow import MlflowClient

    from esi.registry.metrics import metrics_from_tags

    base, res, tracking = pipeline_run
    assert res.exit_code == 0, res.output[-3000:]
    run = base / "run"
    config = json.loads((run / "pretrain" / "launch-config.json").read_text())
    assert config["mix"] == [{"store": str(run / "real_store"), "captions": str(run / "real_captions.parquet")}]
    assert config["freeze_ecg_stages"] == 3  # the pipeline's default recipe reached the training config
    real = json.loads((run / "evaluation_real" / "metrics.json").read_text())
    assert real["benchmark"]["benchmark"] == "real" and real["benchmark"]["n_records"] >= 150
    assert real["settings"]["n_bootstrap"] == 100  # the pipeline parameter reached the evaluation
    assert set(real["modes"]) == {"zero_shot", "linear_probe", "linear_probe_random_init"}
    mv = MlflowClient(tracking_uri=tracking).get_model_version_by_alias("esi", "champion")
    registered = metrics_from_tags(dict(mv.tags))
    for mode in real["modes"]:
        assert registered[f"real.conditions.{mode}.macro_auc"] == pytest.approx(real["modes"][mode]["macro_auc"])
    assert "synthetic.superdiagnostic.zero_shot.macro_auc" in registered
    card = Path(json.loads((run / "pipeline-run.json").read_text())["outputs"]["model card"]).read_text()
    assert "| real | conditions | zero_shot | macro_auc |" in card
    assert "| synthetic | superdiagnostic | zero_shot | macro_auc |" in card
    head = json.loads((run / "pipeline-run.json").read_text())["headline"]
    zs = real["modes"]["zero_shot"]
    assert head["real"]["zero_shot_macro_auc"] == pytest.approx(zs["macro_auc"])
    # The summary: synthetic next to real, with the real interval and both probes (esi run's wording).
    assert "synthetic test folds, zero-shot" in res.output
    assert (f"real ECGs (AF, RBBB, LBBB, 1AVB), zero-shot {zs['macro_auc']:.3f} (95% CI {zs['ci95'][0]:.3f}-"
            f"{zs['ci95'][1]:.3f})") in res.output
    assert "real ECGs, linear probe (5-fold CV)" in res.output and "real ECGs, random-init linear probe" in res.output


def test_pipeline_stops_at_the_validation_gate(tmp_path: Path) -> None:
    """The gate of esi_full (dsl.If on validate's ``proceed``, dsl.Else -> validation_gate) under kfp.local: a
    store that lies about its sampling rate fails validation, the gated step never runs, the run fails naming
    the report."""
    import sys

    from kfp import dsl, local
    from kfp.dsl import Dataset

    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset

    sys.path.insert(0, str(CORPUS.parents[2]))
    from components.score.component import score_plan
    from components.validate.component import validate, validation_gate

    generate_dataset(tmp_path / "synth", subjects=4, records_per_subject=2, progress=False)
    prepare("ptbxl", tmp_path / "synth", tmp_path / "store", progress=False)
    header = json.loads((tmp_path / "store" / "header.json").read_text())
    header["fs"] = 250
    (tmp_path / "store" / "header.json").write_text(json.dumps(header))
    store = str(tmp_path / "store")

    @dsl.pipeline
    def gated(work_root: str):
        imported = dsl.importer(artifact_uri=store, artifact_class=Dataset, metadata={"path": store})
        checked = validate(work_root=work_root, store=imported.output)
        with dsl.If(checked.outputs["proceed"] == True):  # noqa: E712
            score_plan(shards=1)  # stands for everything after the gate
        with dsl.Else():
            validation_gate(report=checked.outputs["report"])

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               raise_on_error=True)
    with pytest.raises(RuntimeError, match="validation-gate"):
        gated(work_root=str(tmp_path / "work"))
    run = next((tmp_path / "kfp").iterdir())
    assert (run / "validate").is_dir() and not (run / "score-plan").exists()
    assert json.loads((tmp_path / "work" / "validation" / "summary.json").read_text())
