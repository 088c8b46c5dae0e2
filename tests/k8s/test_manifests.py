"""k8s/: each overlay renders, every manifest validates offline, and the training jobs are the JobSpec's.

Core kinds are checked with kubernetes-validate (strict: unknown fields fail); PyTorchJob/TrainJob against the
CRD schemas in schemas/ (PROVENANCE.md), with the API server's pruning emulated so a misplaced field fails.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from esi.pipeline.jobspec import JobSpec, write_manifests

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = "1.32.0"
CRD_SCHEMAS = {"PyTorchJob": "pytorchjob.kubeflow.org_v1.yaml",
               "TrainJob": "trainjob.trainer.kubeflow.org_v1alpha1.yaml"}


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    out = subprocess.run([kubectl, "kustomize", str(REPO / "k8s" / "overlays" / overlay)], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=["local", "a100"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def pruning(schema: dict) -> dict:
    """Objects with listed properties reject unknown fields, unless they preserve them (as the server prunes)."""
    schema = copy.deepcopy(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return schema


def crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = yaml.safe_load((SCHEMAS / CRD_SCHEMAS[kind]).read_text())
    return jsonschema.Draft202012Validator(pruning(schema))


def core_validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_overlays_render_every_part(overlay: tuple[str, list[dict]]) -> None:
    _, docs = overlay
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(["Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "Deployment",
                            "Service", "HorizontalPodAutoscaler", "CronJob", "PyTorchJob", "TrainJob"])
    assert all(d["metadata"].get("namespace") == "esi" for d in docs if d["kind"] != "Namespace")


def test_core_manifests_validate(overlay: tuple[str, list[dict]]) -> None:
    _, docs = overlay
    core = [d for d in docs if d["kind"] not in CRD_SCHEMAS]
    for doc in core:
        core_validate(doc)


def test_core_validation_catches_a_typo() -> None:
    doc = one(render("local"), "Deployment", "mlflow")
    doc["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # 'resources' misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        core_validate(doc)


def test_training_jobs_validate_against_their_crds(overlay: tuple[str, list[dict]]) -> None:
    _, docs = overlay
    for kind in CRD_SCHEMAS:
        doc = one(docs, kind)
        errors = [e.message for e in crd_validator(kind).iter_errors(doc)]
        assert errors == [], (kind, errors)
    job = one(docs, "PyTorchJob")
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        core_validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                       "template": replica["template"]})
    patch = one(docs, "TrainJob")["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    pod = patch["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    core_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {**{k: v for k, v in pod.items() if k != "containers"},
                            "containers": [{"name": "node", "image": "x", "volumeMounts": pod["containers"][0]
                                            ["volumeMounts"]}]}})


def test_crd_schema_rejects_misplaced_fields() -> None:
    """What the emulated pruning catches: resources on a runtime-patch container, a replica count as a string."""
    trainjob = JobSpec.preset("a100").to_trainjob()
    rj = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    rj["template"]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    assert list(crd_validator("TrainJob").iter_errors(trainjob))
    job = JobSpec.preset("a100").to_pytorchjob()
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "1"
    assert list(crd_validator("PyTorchJob").iter_errors(job))
    job = JobSpec.preset("a100").to_pytorchjob()
    job["spec"]["nprocPerNode"] = 4  # the CRD wants a string ("4", "auto", "gpu")
    assert list(crd_validator("PyTorchJob").iter_errors(job))


@pytest.mark.parametrize("kind", ["pytorchjob", "trainjob"])
def test_overlay_jobs_are_the_jobspec(overlay: tuple[str, list[dict]], kind: str) -> None:
    """The job the launcher submits (JobSpec.preset(overlay)) is exactly what the overlay renders."""
    name, docs = overlay
    expected = JobSpec.preset(name).render(kind)
    got = one(docs, expected["kind"])
    assert got == expected
    spec = JobSpec.preset(name)
    if kind == "pytorchjob":
        pod = got["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert got["spec"]["nprocPerNode"] == str(spec.nproc_per_node)
    else:
        resources = got["spec"]["trainer"]["resourcesPerNode"]
        assert got["spec"]["trainer"]["numProcPerNode"] == spec.nproc_per_node
    if name == "a100":
        assert resources["limits"]["nvidia.com/gpu"] == "4" and spec.nproc_per_node == 4
    else:
        assert "nvidia.com/gpu" not in resources["limits"]


def test_committed_base_and_patches_are_generated(tmp_path: Path) -> None:
    for folder, preset, patch in (("k8s/base", "a100", False), ("k8s/overlays/local", "local", True)):
        out = tmp_path / folder
        out.mkdir(parents=True)
        for path in write_manifests(str(out), preset, patch=patch):
            committed = REPO / folder / Path(path).name
            fresh = Path(path).read_text().replace(str(out), folder)
            assert committed.read_text() == fresh, f"{committed} is stale: python -m esi.pipeline.jobspec {folder} " \
                                                   f"{preset}"


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    pods = []
    if doc["kind"] == "Deployment":
        pods = [spec["template"]["spec"]]
    elif doc["kind"] == "CronJob":
        pods = [spec["jobTemplate"]["spec"]["template"]["spec"]]
    elif doc["kind"] == "PyTorchJob":
        pods = [r["template"]["spec"] for r in spec["pytorchReplicaSpecs"].values()]
    return [c for p in pods for c in p["containers"]]


def test_containers_are_locked_down(overlay: tuple[str, list[dict]]) -> None:
    _, docs = overlay
    containers = [c for d in docs for c in _containers(d)]
    assert len(containers) >= 4
    for c in containers:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
    for d in docs:
        if d["kind"] in ("Deployment", "CronJob"):
            pod = (d["spec"]["template"] if d["kind"] == "Deployment" else d["spec"]["jobTemplate"]["spec"]["template"])
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]


def test_serving_scoring_and_rbac(overlay: tuple[str, list[dict]]) -> None:
    name, docs = overlay
    serving = one(docs, "Deployment", "esi-serving")["spec"]["template"]["spec"]["containers"][0]
    assert serving["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serving["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert ("nvidia.com/gpu" in serving["resources"]["limits"]) == (name == "a100")
    assert one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "esi-serving"
    assert one(docs, "CronJob")["spec"]["concurrencyPolicy"] == "Forbid"
    mlflow = one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    db = [e for e in mlflow["env"] if e["name"] == "MLFLOW_DB_URI"][0]
    assert db["valueFrom"]["secretKeyRef"] == {"name": "esi-mlflow-db", "key": "uri"}
    rules = {(r["apiGroups"][0], res): set(r["verbs"]) for r in one(docs, "Role")["rules"] for res in r["resources"]}
    for group, res in (("kubeflow.org", "pytorchjobs"), ("trainer.kubeflow.org", "trainjobs")):
        assert rules[(group, res)] == {"create", "get", "list", "watch", "delete"}
    assert {"get"} <= rules[("", "pods")] and {"get"} <= rules[("", "pods/log")]
