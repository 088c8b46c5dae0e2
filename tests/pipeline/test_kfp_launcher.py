"""The cluster launcher against a loopback Kubernetes API: success, failure, timeout, API error, re-attach.

What each test would catch: a launcher that does not wait (success asserts the final condition and the streamed
log), that swallows a failed job or a timeout (PipelineError expected), that retries or hides a 403 (message
names RBAC), that submits a job different from the overlay's, or that deletes a job that is not its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kube_server import KubeServer, KubeState  # noqa: E402

from esi.errors import ConfigError, PipelineError  # noqa: E402
from esi.pipeline.jobspec import JobSpec  # noqa: E402
from esi.pipeline.launcher import ClusterJob  # noqa: E402

PATHS = {"pytorchjob": "/apis/kubeflow.org/v1/namespaces/esi/pytorchjobs",
         "trainjob": "/apis/trainer.kubeflow.org/v1alpha1/namespaces/esi/trainjobs"}


def _job(api, kind="pytorchjob", cleanup="on-success", timeout_s=30.0, spec=None):
    lines: list[str] = []
    job = ClusterJob(spec or JobSpec.preset("a100"), kind, api_client=api, poll_s=0.01, timeout_s=timeout_s,
                     cleanup=cleanup, echo=lines.append)
    return job, lines


@pytest.mark.parametrize("kind", ["pytorchjob", "trainjob"])
def test_success_waits_streams_and_cleans_up(kind: str) -> None:
    state = KubeState("success")
    with KubeServer(state) as api:
        job, lines = _job(api, kind)
        outcome = job.run()
    assert outcome.phase == ("Succeeded" if kind == "pytorchjob" else "Complete")
    method, path, body = state.requests[0]
    assert (method, path) == ("POST", PATHS[kind])
    assert body == JobSpec.preset("a100").render(kind)  # what k8s/overlays/a100 renders (tests/k8s)
    assert any("Running=True" in line for line in lines)
    assert any(line.startswith("[esi-pretrain] epoch 2 loss") for line in lines)
    assert len([line for line in lines if "epoch 0 " in line]) == 1  # each log line printed once
    assert state.deleted == ["esi-pretrain"]
    selector = state.selectors[0]
    assert ("replica-type=master" in selector) if kind == "pytorchjob" else ("job-completion-index=0" in selector)


def test_failed_job_fails_the_step_and_keeps_pods() -> None:
    state = KubeState("failure")
    with KubeServer(state) as api:
        job, _ = _job(api)
        with pytest.raises(PipelineError, match="failed: rank 0 exited 1"):
            job.run()
    assert state.deleted == []  # on-success: a failed job stays for kubectl logs


def test_timeout_fails_and_stops_the_job() -> None:
    state = KubeState("never")
    with KubeServer(state) as api:
        job, _ = _job(api, timeout_s=0.2)
        with pytest.raises(PipelineError, match="timeout: not finished after"):
            job.run()
    assert state.deleted == ["esi-pretrain"]  # a timed-out job would hold 4 GPUs


def test_cleanup_never_keeps_a_timed_out_job() -> None:
    state = KubeState("never")
    with KubeServer(state) as api:
        job, _ = _job(api, timeout_s=0.1, cleanup="never")
        with pytest.raises(PipelineError):
            job.run()
    assert state.deleted == []


def test_api_error_names_the_fix() -> None:
    state = KubeState("forbidden")
    with KubeServer(state) as api:
        job, _ = _job(api, "trainjob")
        with pytest.raises(PipelineError, match=r"HTTP 403 .*cannot create resource.*k8s/base/rbac.yaml"):
            job.run()


def test_reattaches_to_its_own_job_but_refuses_a_foreign_one() -> None:
    spec = JobSpec.preset("a100")
    state = KubeState("success", existing=spec.to_pytorchjob())
    with KubeServer(state) as api:
        job, lines = _job(api, spec=spec)
        job.run()
    assert any("attaching" in line for line in lines)
    foreign = spec.to_pytorchjob()
    foreign["metadata"]["annotations"] = {}
    state = KubeState("success", existing=foreign)
    with KubeServer(state) as api:
        job, _ = _job(api, spec=spec)
        with pytest.raises(PipelineError, match="already exists and was not created by esi-launcher"):
            job.run()
    assert state.deleted == []


def test_replaces_its_own_failed_job() -> None:
    spec = JobSpec.preset("a100")
    state = KubeState("success", existing=spec.to_pytorchjob(), existing_failed=True)
    with KubeServer(state) as api:
        job, lines = _job(api, spec=spec)
        job.run()
    assert any("replacing our earlier failed job" in line for line in lines)
    assert state.deleted == ["esi-pretrain", "esi-pretrain"]  # the old one, then cleanup after success
    assert [m for m, p, _ in state.requests if m == "POST"] == ["POST", "POST"]


def test_jobspec_checks() -> None:
    with pytest.raises(ConfigError, match="one process per GPU"):
        JobSpec(nproc_per_node=2, gpus_per_node=4)
    with pytest.raises(ConfigError, match="known: a100, local"):
        JobSpec.preset("h100")
    a100 = JobSpec.preset("a100").to_pytorchjob()
    pod = a100["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["containers"][0]["command"][:3] == ["torchrun", "--nnodes=1", "--nproc-per-node=4"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in pod["volumes"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"].startswith("http://mlflow.") and "NCCL_DEBUG" in env
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "esi-api-keys"
    two = JobSpec.preset("a100", nodes=3).to_pytorchjob()["spec"]["pytorchReplicaSpecs"]
    assert two["Master"]["replicas"] == 1 and two["Worker"]["replicas"] == 2


def test_run_pretrain_submits_the_config_it_wrote(tmp_path: Path) -> None:
    """The pipeline's entry point on the cluster path: the job reads the PretrainConfig JSON the step wrote."""
    from esi.pipeline.launcher import pretrain_config, run_pretrain
    from esi.train.config import PretrainConfig

    out = tmp_path / "pretrain"
    cfg = pretrain_config("esi_test", tmp_path / "store", tmp_path / "captions.parquet", out, epochs=2, batch_size=4)
    out.mkdir()
    (out / "model.pt").write_bytes(b"written by the job on the shared volume")
    (out / "history.json").write_text('{"mlflow_run_id": "abc"}')
    state = KubeState("success")
    with KubeServer(state) as api:
        r = run_pretrain(cfg, launcher="trainjob", nproc_per_node=4, api_client=api, poll_s=0.01, echo=lambda s: None)
    body = state.requests[0][2]
    command = body["spec"]["trainer"]["command"]
    config_path = command[command.index("--config") + 1]
    assert config_path == str(out / "launch-config.json")
    assert PretrainConfig.from_json(config_path).epochs == 2 and PretrainConfig.from_json(config_path).folds == list(
        range(1, 9))
    assert body["spec"] == JobSpec.preset("a100", config_path=config_path).to_trainjob()["spec"]
    assert (r["checkpoint"], r["mlflow_run_id"], r["launcher"]) == (str(out / "model.pt"), "abc", "trainjob")
    with pytest.raises(ConfigError, match="known: in-process, torchrun, pytorchjob, trainjob"):
        run_pretrain(cfg, launcher="slurm")


@pytest.mark.slow  # ~1.5 min on 2 shared cores: make test-all runs it
def test_torchrun_launcher_trains_on_cpu(tmp_path: Path) -> None:
    """Locally the same entry point runs DDP under torchrun (2 CPU processes, gloo) and yields the checkpoint."""
    from dataclasses import replace

    from esi.cqa.captions import caption_store
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset
    from esi.pipeline.launcher import pretrain_config, run_pretrain

    generate_dataset(tmp_path / "synth", subjects=4, records_per_subject=2, progress=False)
    prepare("ptbxl", tmp_path / "synth", tmp_path / "store", progress=False)
    caption_store(tmp_path / "store", tmp_path / "captions.parquet", plain=True, progress=False)
    cfg = pretrain_config("esi_test", tmp_path / "store", tmp_path / "captions.parquet", tmp_path / "pretrain",
                          epochs=1, batch_size=2)
    cfg = replace(cfg, folds=None, mlflow=False, num_workers=0)
    r = run_pretrain(cfg, launcher="torchrun", nproc_per_node=2)
    assert Path(r["checkpoint"]).is_file() and r["launcher"] == "torchrun"
    from esi.train.checkpointing import latest_checkpoint

    _, state = latest_checkpoint(tmp_path / "pretrain")
    assert state["training"]["world_size"] == 2  # two DDP ranks, not one process


def test_cluster_job_config_carries_the_real_mix(tmp_path: Path) -> None:
    """mix_real on the PyTorchJob path: the config JSON the job's torchrun reads names the real store."""
    from esi.pipeline.launcher import pretrain_config, run_pretrain
    from esi.train.config import PretrainConfig

    out = tmp_path / "pretrain"
    mix = [{"store": str(tmp_path / "real_store"), "captions": str(tmp_path / "real_captions.parquet")}]
    cfg = pretrain_config("esi_test", tmp_path / "store", tmp_path / "captions.parquet", out, epochs=1,
                          batch_size=4, mix=mix)
    out.mkdir()
    (out / "model.pt").write_bytes(b"written by the job")
    state = KubeState("success")
    with KubeServer(state) as api:
        run_pretrain(cfg, launcher="pytorchjob", nproc_per_node=4, api_client=api, poll_s=0.01, echo=lambda s: None)
    command = state.requests[0][2]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "command"]
    assert PretrainConfig.from_json(command[command.index("--config") + 1]).mix == mix
    assert pretrain_config("esi_test", "s", "c", out, epochs=1, batch_size=4).mix == []
    with pytest.raises(ConfigError, match="mix"):
        pretrain_config("esi_test", "s", "c", out, epochs=1, batch_size=4, mix=[{"store": "only"}])
