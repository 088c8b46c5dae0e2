"""Both pipelines compile, the committed YAML is what they compile to, and the cluster settings are in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile in a fresh interpreter without ESI_IMAGE (the committed YAML uses the default image)."""
    out = tmp_path_factory.mktemp("compiled")
    env = {k: v for k, v in os.environ.items() if k != "ESI_IMAGE"}
    subprocess.run([sys.executable, "-m", "esi.cli", "pipeline", "compile", "--out-dir", str(out)], check=True,
                   env=env, cwd=REPO, capture_output=True)
    return out


@pytest.mark.parametrize("name", ["esi_full", "batch_scoring"])
def test_committed_yaml_is_current(compiled: Path, name: str) -> None:
    fresh = (compiled / f"{name}.yaml").read_text()
    committed = (REPO / "pipelines" / f"{name}.yaml").read_text()
    assert committed == fresh, f"pipelines/{name}.yaml is out of date: run 'esi pipeline compile' and commit it"


def _docs(path: Path) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_parameters_are_typed_with_defaults(compiled: Path) -> None:
    spec, _ = _docs(compiled / "esi_full.yaml")
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("work_root", "source", "source_root", "model_config", "epochs", "llm", "llm_base_url", "embeddings",
                 "promotion_gates", "launcher", "training_image", "score_shards", "validation_gate"):
        assert "defaultValue" in params[name], name
    assert params["epochs"]["parameterType"] == "NUMBER_INTEGER"
    assert params["validation_gate"]["parameterType"] == "BOOLEAN"
    assert params["lr"]["parameterType"] == "NUMBER_DOUBLE"
    spec, _ = _docs(compiled / "batch_scoring.yaml")
    assert spec["root"]["inputDefinitions"]["parameters"]["model"]["defaultValue"] == "models:/esi@champion"


def test_cluster_settings(compiled: Path) -> None:
    spec, executors = _docs(compiled / "esi_full.yaml")
    assert all(e["pvcMount"][0]["constant"] == "esi-data" for e in executors.values())
    ev = executors["exec-evaluate"]
    assert ev["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert ev["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {"mountPath": "/dev/shm", "medium": "Memory"}.items() <= [m for m in ev["emptyDirMounts"]
                                                                       if m["mountPath"] == "/dev/shm"][0].items()
    assert executors["exec-caption"]["secretAsEnv"][0]["keyToEnv"][0]["envVar"] == "OPENAI_API_KEY"
    res = spec["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["resources"]
    assert res["accelerator"]["resourceType"] == "nvidia.com/gpu" and res["accelerator"]["resourceCount"] == "1"
    assert "nodeSelector" not in executors["exec-pretrain"]  # it only launches and watches the GPU job


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, nested DAGs included, by task name."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {name: task for dag in dags for name, task in dag["tasks"].items()}


def _artifact_from(task: dict, name: str) -> str:
    """The producer of input artifact NAME: a task, or the pipeline channel a nested DAG passes it through."""
    ref = task["inputs"]["artifacts"][name]
    return ref.get("taskOutputArtifact", {}).get("producerTask") or ref["componentInputArtifact"]


def test_real_benchmark_is_wired_through(compiled: Path) -> None:
    """prepare-real -> caption (part real) -> pretrain mix; evaluate-real -> register; both evaluations use the
    run's knowledge base; real_benchmark (on) and mix_real (off) are boolean parameters with esi run's defaults."""
    spec, executors = _docs(compiled / "esi_full.yaml")
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name, default in (("real_benchmark", True), ("mix_real", False)):
        assert params[name]["parameterType"] == "BOOLEAN" and params[name]["defaultValue"] is default, name
    tasks = _tasks(spec)
    real_caption = tasks["caption-2"]
    assert real_caption["taskInfo"]["name"] == "caption-real"
    assert "caption" in real_caption["dependentTasks"]  # one writer of the caption cache at a time
    assert real_caption["inputs"]["parameters"]["part"]["runtimeValue"]["constant"] == "real"
    assert _artifact_from(real_caption, "store") == "pipelinechannel--prepare-real-store"
    pretrain = tasks["pretrain"]
    assert _artifact_from(pretrain, "real_store") == "pipelinechannel--prepare-real-store"
    assert _artifact_from(pretrain, "real_captions") == "caption-2"
    assert pretrain["inputs"]["parameters"]["mix_real"]["componentInputParameter"] == "pipelinechannel--mix_real"
    assert tasks["prepare-real"]["inputs"]["parameters"]["enabled"]["componentInputParameter"] == "real_benchmark"
    assert params["real_n_bootstrap"]["defaultValue"] == 1000
    assert (tasks["evaluate-real"]["inputs"]["parameters"]["n_bootstrap"]["componentInputParameter"]
            == "pipelinechannel--real_n_bootstrap")
    for step in ("evaluate", "evaluate-real"):
        assert _artifact_from(tasks[step], "kb") == "build-kb", step
        assert _artifact_from(tasks[step], "model") == "pretrain", step
    assert _artifact_from(tasks["evaluate-real"], "store") == "pipelinechannel--prepare-real-store"
    register = tasks["register"]
    assert _artifact_from(register, "evaluation") == "pipelinechannel--evaluate-evaluation"
    assert _artifact_from(register, "evaluation_real") == "pipelinechannel--evaluate-real-evaluation"
    ev = executors["exec-evaluate-real"]  # scored on one GPU like the synthetic evaluation
    assert ev["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert executors["exec-caption-2"]["secretAsEnv"][0]["keyToEnv"][0]["envVar"] == "OPENAI_API_KEY"
