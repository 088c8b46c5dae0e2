"""``esi pipeline submit / schedule / run`` against a loopback KFP API (what kfp.Client really sends)."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from kfp_server import KfpServer  # noqa: E402

from esi.cli import app  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_submit_creates_a_run_with_the_parameters() -> None:
    with KfpServer() as kfp:
        res = CliRunner().invoke(app, ["pipeline", "submit", "--endpoint", kfp.url, "--package",
                                       str(REPO / "pipelines" / "esi_full.yaml"), "--experiment", "esi-dev",
                                       "--run-name", "nightly", "-p", "epochs=30", "-p", "launcher=pytorchjob"])
        assert res.exit_code == 0, res.output
        assert "submitted run run-1 (nightly) in experiment esi-dev" in res.output
        (run,) = kfp.posted("/apis/v2beta1/runs")
    assert run["display_name"] == "nightly" and run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {"epochs": 30, "launcher": "pytorchjob"}
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "esi-full"
    executors = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-pretrain"]["pvcMount"][0]["constant"] == "esi-data"  # the cluster settings go too


def test_the_documented_kfp_cli_command_submits() -> None:
    """docs/kubeflow.md and the README give `kfp --endpoint URL run create -e EXP -r NAME -f FILE k=v`: the
    kfp 2.17 CLI really sends that run (typed parameters included) to the endpoint."""
    import subprocess

    kfp_cli = str(Path(sys.executable).with_name("kfp"))
    with KfpServer() as kfp:
        res = subprocess.run([kfp_cli, "--endpoint", kfp.url, "run", "create", "-e", "esi", "-r", "esi-full-1", "-f",
                              str(REPO / "pipelines" / "esi_full.yaml"), "launcher=pytorchjob", "epochs=30"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        (run,) = kfp.posted("/apis/v2beta1/runs")
    assert run["display_name"] == "esi-full-1"
    assert run["runtime_config"]["parameters"] == {"launcher": "pytorchjob", "epochs": 30}


def test_schedule_creates_a_recurring_run_that_never_overlaps() -> None:
    with KfpServer() as kfp:
        res = CliRunner().invoke(app, ["pipeline", "schedule", "--endpoint", kfp.url, "--cron", "0 30 1 * * *",
                                       "--package", str(REPO / "pipelines" / "batch_scoring.yaml"),
                                       "-p", "records=/data/new"])
        assert res.exit_code == 0, res.output
        (rr,) = kfp.posted("/apis/v2beta1/recurringruns")
    assert rr["trigger"]["cron_schedule"]["cron"] == "0 30 1 * * *"
    assert int(rr["max_concurrency"]) == 1 and rr["no_catchup"] is True and rr["mode"] == "ENABLE"
    assert rr["runtime_config"]["parameters"] == {"records": "/data/new"}
    assert rr["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "esi-batch-scoring"


def test_bad_cron_missing_package_and_no_local_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["pipeline", "schedule", "--endpoint", "http://127.0.0.1:9", "--cron", "0 2 * * *"])
    assert res.exit_code == 2 and "6 fields, seconds first" in res.output
    res = runner.invoke(app, ["pipeline", "submit", "--endpoint", "http://127.0.0.1:9", "--package",
                              str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "esi pipeline compile" in res.output
    res = runner.invoke(app, ["pipeline", "submit", "--endpoint", "http://127.0.0.1:9"])
    assert res.exit_code == 2 and "cannot reach the KFP endpoint http://127.0.0.1:9" in res.output
    res = runner.invoke(app, ["pipeline", "run"])
    assert res.exit_code == 2 and "--local" in res.output
    res = runner.invoke(app, ["pipeline", "run", "--local", "--out", str(tmp_path), "-p", "epochz=3"])
    assert res.exit_code == 2 and "unknown parameter(s) ['epochz']" in res.output


def test_local_run_passes_the_real_flags_and_prints_the_headline(tmp_path: Path, monkeypatch) -> None:
    """--no-real / --no-mix-real reach the pipeline as real_benchmark / mix_real; the summary ends with esi run's
    headline block: synthetic zero-shot next to the real-ECG zero-shot with its CI and both probes."""
    import esi.pipeline.kfp_local as kfp_local

    seen: list[dict] = []

    def fake_run(out, args, *, pipeline):
        seen.append(args)
        real = {"zero_shot_macro_auc": 0.634, "zero_shot_macro_auc_ci_low": 0.55, "zero_shot_macro_auc_ci_high": 0.71,
                "linear_probe_macro_auc": 0.702, "linear_probe_random_init_macro_auc": 0.611}
        return kfp_local.PipelineRun(work_root=str(out), pipeline_root=str(out / "kfp"), steps={"evaluate-real": 3.0},
                                     headline={"metrics": {"zero_shot_macro_auc": 0.912}, "real": real})

    monkeypatch.setattr(kfp_local, "run_pipeline_locally", fake_run)
    res = CliRunner().invoke(app, ["pipeline", "run", "--local", "--out", str(tmp_path), "--no-real"])
    assert res.exit_code == 0, res.output
    assert seen[-1]["real_benchmark"] is False and "mix_real" not in seen[-1]  # unset: the pipeline's default
    lines = res.output.splitlines()
    assert "  synthetic test folds, zero-shot            0.912" in lines
    assert "  real ECGs (AF, RBBB, LBBB, 1AVB), zero-shot 0.634 (95% CI 0.550-0.710)" in lines
    assert any(line.startswith("  real ECGs, linear probe (5-fold CV)") and line.endswith("0.702") for line in lines)
    assert any(line.startswith("  real ECGs, random-init linear probe") and line.endswith("0.611") for line in lines)
    CliRunner().invoke(app, ["pipeline", "run", "--local", "--out", str(tmp_path), "--no-mix-real"])
    assert seen[-1]["mix_real"] is False and "real_benchmark" not in seen[-1]
