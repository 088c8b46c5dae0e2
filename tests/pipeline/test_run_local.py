"""The whole pipeline end to end, in process, as ``make run`` runs it (small sizes, the tiny test model).

This is the one end-to-end path CI always runs: synthetic data -> store -> validation -> knowledge base ->
captions -> pretraining -> evaluation, then a second run that must resume instead of redoing the work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from esi.errors import ConfigError
from esi.pipeline.local import STAGES, RunConfig, parse_stages, run_local


def test_parse_stages() -> None:
    assert parse_stages(None) == STAGES
    assert parse_stages("caption-") == ("caption", "pretrain", "evaluate", "register", "promote", "bento", "score")
    assert parse_stages("synth, prepare") == ("synth", "prepare")
    with pytest.raises(ConfigError, match="teleport"):
        RunConfig(out=Path("x"), stages=("teleport",))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("run")
    # A gate the tiny model passes, so the run ends with a champion (the refusal path is tested below).
    cfg = RunConfig(out=out, subjects=30, records_per_subject=3, epochs=1, model="esi_test", batch_size=8,
                    model_name="esi-e2e", gates=("synthetic.superdiagnostic.zero_shot.macro_auc>=0.0",),
                    mix_real=True)
    return out, run_local(cfg, progress=False)


def test_every_stage_writes_its_outputs(finished_run: tuple[Path, object]) -> None:
    out, result = finished_run
    assert set(result.seconds) == set(STAGES)
    not_paths = {"registered model", "champion", "bento", "serve it"}
    for what, where in result.outputs.items():
        if what not in not_paths:
            assert Path(where).exists(), where
    record = json.loads((out / "run.json").read_text())
    assert record["notes"]["prepare"]["records"] == 90 and record["notes"]["prepare"]["rejected"] == 0
    assert record["notes"]["validate"]["passed"] is True
    assert record["notes"]["caption"]["records"] == 90
    assert (out / "pretrain" / "model.pt").is_file()
    assert json.loads((out / "pretrain" / "config.json").read_text())["freeze_ecg_stages"] == 3  # make run's recipe
    assert any((out / "evaluation").rglob("*.json"))
    # The real-ECG benchmark: prepared, captioned, mixed into pretraining (its pretraining part only), evaluated.
    assert record["notes"]["prepare"]["real_records"] == 383
    assert record["notes"]["caption"]["real"]["records"] == 383
    real = record["notes"]["evaluate"]["real"]
    assert {"zero_shot_macro_auc", "linear_probe_macro_auc", "linear_probe_random_init_macro_auc"} <= set(real)
    real_metrics = json.loads((out / "evaluation_real" / "metrics.json").read_text())
    assert real_metrics["contamination"]["status"] == "known" and real_metrics["contamination"]["overlap"] == 0
    assert real_metrics["contamination"]["n_records"] > 90  # synthetic folds 1-8 + the real pretraining part
    # register -> promote -> bento -> score: the run ends with a served, scored champion.
    assert record["notes"]["register"]["created"] is True and record["notes"]["register"]["version"] == 1
    assert record["notes"]["promote"] == {"version": 1, "promoted": True, "failing_gates": 0}
    from mlflow import MlflowClient

    from esi.registry.metrics import metrics_from_tags
    from esi.settings import get_settings

    version = MlflowClient(tracking_uri=get_settings().tracking_uri).get_model_version("esi-e2e", "1")
    on_version = metrics_from_tags(dict(version.tags))
    assert abs(on_version["real.conditions.zero_shot.macro_auc"] - real["zero_shot_macro_auc"]) < 1e-6
    assert result.outputs["champion"] == "models:/esi-e2e@champion"
    assert record["notes"]["bento"] == {"bento": "esi:esi-e2e-1", "model": "models:/esi-e2e@champion"}
    assert "bentoml serve" in result.outputs["serve it"]
    scored = record["notes"]["score"]
    assert scored["model_version"] == "1" and scored["records"] > 0
    assert scored["records"] + scored["rejected"] >= 20  # the shipped real records, each scored or rejected
    import pandas as pd

    frame = pd.concat([pd.read_parquet(f) for f in sorted((out / "scores" / "scores").glob("part-*.parquet"))])
    assert len(frame) == scored["records"] and frame["record_id"].is_unique
    assert any(c.startswith("score_") for c in frame.columns)


def test_second_registration_is_the_same_version(finished_run: tuple[Path, object]) -> None:
    out, _ = finished_run
    cfg = RunConfig(out=out, subjects=30, records_per_subject=3, epochs=1, model="esi_test", batch_size=8,
                    model_name="esi-e2e", stages=("register", "promote"),
                    gates=("synthetic.superdiagnostic.zero_shot.macro_auc>=2.0",))  # cannot hold: AUC <= 1
    again = run_local(cfg, progress=False)
    assert again.notes["register"] == {"version": 1, "created": False,
                                       "digest": again.notes["register"]["digest"]}
    assert again.notes["promote"]["promoted"] is False and again.notes["promote"]["failing_gates"] == 1
    # The refusal left the champion where it was.
    from mlflow import MlflowClient

    from esi.settings import get_settings

    mv = MlflowClient(tracking_uri=get_settings().tracking_uri).get_model_version_by_alias("esi-e2e", "champion")
    assert int(mv.version) == 1


def test_second_run_resumes(finished_run: tuple[Path, object]) -> None:
    out, first = finished_run
    cfg = RunConfig(out=out, subjects=30, records_per_subject=3, epochs=1, model="esi_test", batch_size=8,
                    stages=("synth", "prepare", "kb", "caption"))
    again = run_local(cfg, progress=False)
    notes = again.notes
    assert notes["kb"]["added"] == 0 and notes["kb"]["unchanged"] > 0  # nothing re-embedded
    assert notes["caption"]["llm_calls"] == 0 and notes["caption"]["cache_hits"] > 0
    assert again.seconds["prepare"] < first.seconds["prepare"] + 5


def test_validation_gate_stops_the_run(tmp_path: Path) -> None:
    """A store whose header is wrong fails validation, and the run stops before captions or training."""
    from esi.cli import app

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--out", str(out), "--subjects", "4", "--records-per-subject", "2",
                                   "--stages", "synth,prepare", "--quiet"])
    assert res.exit_code == 0, res.output
    header = json.loads((out / "store" / "header.json").read_text())
    header["fs"] = 250
    (out / "store" / "header.json").write_text(json.dumps(header))
    res = CliRunner().invoke(app, ["run", "--out", str(out), "--stages", "validate-", "--quiet"])
    assert res.exit_code == 2
    assert "validation failed" in res.output and "--no-gate" in res.output
    assert not (out / "captions.parquet").exists()
