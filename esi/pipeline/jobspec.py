"""One description of the distributed pretraining job, rendered as a PyTorchJob or a TrainJob.

Both manifests come from the same :class:`JobSpec`, so the Training Operator v1 job and the Trainer v2 job cannot
drift apart; k8s/base and the overlays hold the same manifests (tests/k8s checks they are equal). The command is
explicit (``torchrun ... -m esi.cli pretrain --config CONFIG --resume``): torchrun reads the rendezvous
(PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT) that both operators set on every pod.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from esi.errors import ConfigError

PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")
TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
OWNER_LABEL = "app.kubernetes.io/managed-by"
OWNER = "esi-launcher"
SPEC_HASH = "esi.dev/spec-hash"
A100_PRODUCT = "NVIDIA-A100-SXM4-80GB"


@dataclass
class JobSpec:
    """Everything a pretraining job needs on the cluster. Defaults are the a100 overlay's."""

    name: str = "esi-pretrain"
    namespace: str = "esi"
    image: str = "ghcr.io/esi-project/esi:0.1.0"
    config_path: str = "/data/esi/pretrain/launch-config.json"  # PretrainConfig JSON on the PVC
    nodes: int = 1
    nproc_per_node: int = 4  # one process per GPU
    gpu_resource: str = "nvidia.com/gpu"
    gpus_per_node: int = 4
    cpu: str = "32"
    memory: str = "256Gi"
    shm_size: str = "64Gi"  # NCCL and DataLoader workers share tensors through /dev/shm
    pvc: str = "esi-data"
    mount_path: str = "/data"
    service_account: str = "esi-pipeline"
    runtime: str = "torch-distributed"  # Trainer v2 ClusterTrainingRuntime
    env: dict[str, str] = field(default_factory=lambda: {
        "ESI_HOME": "/data/esi/home", "MLFLOW_TRACKING_URI": "http://mlflow.esi.svc.cluster.local:5000",
        "NCCL_DEBUG": "WARN", "NCCL_ASYNC_ERROR_HANDLING": "1", "OMP_NUM_THREADS": "8",
        "TOKENIZERS_PARALLELISM": "false", "HOME": "/tmp", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true"})
    secret_env: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        "OPENAI_API_KEY": ("esi-api-keys", "openai-api-key")})  # env -> (secret, key)
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.product": A100_PRODUCT})
    tolerations: list[dict[str, str]] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    backoff_limit: int = 2
    active_deadline_s: int | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.nproc_per_node < 1:
            raise ConfigError(f"job {self.name}: nodes={self.nodes}, nproc_per_node={self.nproc_per_node}: "
                              "both must be at least 1")
        if self.gpus_per_node and self.gpus_per_node != self.nproc_per_node:
            raise ConfigError(f"job {self.name}: {self.nproc_per_node} processes for {self.gpus_per_node} GPUs "
                              "per node; torchrun runs one process per GPU, set nproc_per_node = gpus_per_node")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> JobSpec:
        """``a100``: 4 x A100 per node, NCCL; ``local``: 2 CPU processes (gloo), no GPU, no node selector."""
        if name == "a100":
            return replace(cls(), **overrides)
        if name == "local":
            base = cls(nproc_per_node=2, gpus_per_node=0, cpu="2", memory="8Gi", shm_size="2Gi",
                       node_selector={}, tolerations=[])
            base.env = {k: v for k, v in base.env.items() if not k.startswith("NCCL")} | {"OMP_NUM_THREADS": "1"}
            return replace(base, **overrides)
        raise ConfigError(f"unknown job preset {name!r}; known: a100, local")

    # --- shared pieces -----------------------------------------------------------------------------------
    def command(self) -> list[str]:
        return ["torchrun", f"--nnodes={self.nodes}", f"--nproc-per-node={self.nproc_per_node}",
                "-m", "esi.cli", "pretrain", "--config", self.config_path, "--resume", "--quiet"]

    def env_list(self) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in self.env.items()]
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": s, "key": key, "optional": True}}}
                for k, (s, key) in self.secret_env.items()]
        return env

    def resources(self) -> dict[str, dict[str, str]]:
        res = {"requests": {"cpu": self.cpu, "memory": self.memory},
               "limits": {"cpu": self.cpu, "memory": self.memory}}
        if self.gpus_per_node:
            res["requests"][self.gpu_resource] = str(self.gpus_per_node)
            res["limits"][self.gpu_resource] = str(self.gpus_per_node)
        return res

    def volumes(self) -> list[dict[str, Any]]:
        return [{"name": "data", "persistentVolumeClaim": {"claimName": self.pvc}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": self.shm_size}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}}]

    def volume_mounts(self) -> list[dict[str, Any]]:
        return [{"name": "data", "mountPath": self.mount_path}, {"name": "dshm", "mountPath": "/dev/shm"},
                {"name": "tmp", "mountPath": "/tmp"}]

    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "esi", "app.kubernetes.io/component": "pretrain", OWNER_LABEL: OWNER}

    def spec_hash(self) -> str:
        """Digest of the description: an existing job with the same name is re-attached only if it matches."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "labels": self.labels(),
                "annotations": {SPEC_HASH: self.spec_hash()}}

    def container(self, name: str) -> dict[str, Any]:
        return {"name": name, "image": self.image, "imagePullPolicy": "IfNotPresent", "command": self.command(),
                "env": self.env_list(), "resources": self.resources(), "volumeMounts": self.volume_mounts(),
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}

    def pod_spec(self, container: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"serviceAccountName": self.service_account, "restartPolicy": "OnFailure",
                                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                                "containers": [self.container(container)], "volumes": self.volumes()}
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = copy.deepcopy(self.tolerations)
        return spec

    # --- the two renderings ------------------------------------------------------------------------------
    def to_pytorchjob(self) -> dict[str, Any]:
        """Kubeflow Training Operator v1: one Master (rank 0) and NODES-1 Workers, NPROC_PER_NODE each."""
        template = {"metadata": {"labels": self.labels()}, "spec": self.pod_spec("pytorch")}
        replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "OnFailure",
                                               "template": template}}
        if self.nodes > 1:
            replicas["Worker"] = {"replicas": self.nodes - 1, "restartPolicy": "OnFailure",
                                  "template": copy.deepcopy(template)}
        run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": self.backoff_limit}
        if self.active_deadline_s:
            run_policy["activeDeadlineSeconds"] = self.active_deadline_s
        return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": self.metadata(),
                "spec": {"nprocPerNode": str(self.nproc_per_node), "runPolicy": run_policy,
                         "pytorchReplicaSpecs": replicas}}

    def to_trainjob(self) -> dict[str, Any]:
        """Kubeflow Trainer v2: the torch-distributed runtime, the same command/env/resources; volumes, node
        selector and tolerations through runtimePatches (the runtime's trainer container is named 'node')."""
        pod_patch: dict[str, Any] = {"serviceAccountName": self.service_account, "volumes": self.volumes(),
                                     "containers": [{"name": "node", "volumeMounts": self.volume_mounts()}]}
        if self.node_selector:
            pod_patch["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            pod_patch["tolerations"] = copy.deepcopy(self.tolerations)
        spec: dict[str, Any] = {
            "runtimeRef": {"name": self.runtime, "apiGroup": "trainer.kubeflow.org",
                           "kind": "ClusterTrainingRuntime"},
            "trainer": {"image": self.image, "command": self.command(), "env": self.env_list(),
                        "numNodes": self.nodes, "numProcPerNode": self.nproc_per_node,
                        "resourcesPerNode": self.resources()},
            "runtimePatches": [{"manager": "esi.dev/launcher", "trainingRuntimeSpec": {"template": {"spec": {
                "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {
                    "metadata": {"labels": self.labels()}, "spec": pod_patch}}}}]}}}}],
        }
        if self.active_deadline_s:
            spec["activeDeadlineSeconds"] = self.active_deadline_s
        return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": self.metadata(),
                "spec": spec}

    def render(self, kind: str) -> dict[str, Any]:
        if kind == "pytorchjob":
            return self.to_pytorchjob()
        if kind == "trainjob":
            return self.to_trainjob()
        raise ConfigError(f"unknown job kind {kind!r}; known: pytorchjob (Training Operator v1), trainjob "
                          "(Trainer v2)")


_HEADER = ("# Generated by `python -m esi.pipeline.jobspec {folder} {preset}{flag}`: do not edit; change "
           "esi/pipeline/jobspec.py.\n")


def write_manifests(folder: str, preset: str, *, patch: bool = False) -> list[str]:
    """Write the PyTorchJob and TrainJob of a preset as YAML: whole manifests (k8s/base) or, with PATCH, the
    JSON 6902 patches an overlay applies to the base ones (their spec and spec hash replaced)."""
    from pathlib import Path

    import yaml

    spec = JobSpec.preset(preset)
    paths = []
    for kind in ("pytorchjob", "trainjob"):
        manifest = spec.render(kind)
        manifest["metadata"].pop("namespace")  # kustomize sets it
        if patch:
            path = Path(folder) / f"pretrain-{kind}-patch.yaml"
            body: Any = [
                {"op": "replace", "path": "/metadata/annotations", "value": manifest["metadata"]["annotations"]},
                {"op": "replace", "path": "/spec", "value": manifest["spec"]}]
        else:
            path = Path(folder) / f"pretrain-{kind}.yaml"
            body = manifest
        path.write_text(_HEADER.format(folder=folder, preset=preset, flag=" --patch" if patch else "")
                        + yaml.safe_dump(body, sort_keys=False))
        paths.append(str(path))
    return paths


if __name__ == "__main__":
    import sys

    print("\n".join(write_manifests(sys.argv[1], sys.argv[2], patch="--patch" in sys.argv[3:])))
