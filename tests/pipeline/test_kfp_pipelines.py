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
