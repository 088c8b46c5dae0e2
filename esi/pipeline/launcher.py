"""Run pretraining where it belongs: in this process, under torchrun on this machine, or as a cluster job.

The cluster path creates a PyTorchJob (Training Operator v1) or a TrainJob (Trainer v2) from one
:class:`~esi.pipeline.jobspec.JobSpec` with the plain Kubernetes client (CustomObjectsApi, CoreV1Api), waits for
it, streams its conditions and the rank-0 pod's log, fails on a failed job or a timeout, and cleans up per policy.
Every path reads the same PretrainConfig JSON and writes the same run directory (RUN_DIR/model.pt).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from esi.errors import ConfigError, PipelineError
from esi.pipeline.jobspec import OWNER, OWNER_LABEL, PYTORCHJOB, SPEC_HASH, TRAINJOB, JobSpec

log = logging.getLogger(__name__)

LAUNCHERS = ("in-process", "torchrun", "pytorchjob", "trainjob")
CLEANUP = ("always", "on-success", "never")
_KINDS = {"pytorchjob": PYTORCHJOB, "trainjob": TRAINJOB}
_DONE = {"pytorchjob": ("Succeeded",), "trainjob": ("Complete",)}
_RANK0 = {"pytorchjob": ("training.kubeflow.org/job-name={name},training.kubeflow.org/replica-type=master", "pytorch"),
          "trainjob": ("jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name=node,"
                       "batch.kubernetes.io/job-completion-index=0", "node")}


def pretrain_config(model: str, store: str | Path, captions: str | Path, out: str | Path, *, epochs: int,
                    batch_size: int, lr: float = 5e-4, seed: int = 0, freeze_ecg_stages: int = 0,
                    mix: list[dict[str, str]] | None = None) -> Any:
    """The PretrainConfig of a pipeline run (the recipe of ``esi run``: folds 9-10 held out for evaluation).

    FREEZE_ECG_STAGES: the encoder's first N stages keep their initial weights (make run's recipe: 3).
    MIX: more ``{"store", "captions"}`` pairs pretrained on with STORE (the real benchmark's captioned store;
    its evaluation part is never trained on). It is part of the config JSON every launcher, and so the cluster
    job, reads.
    """
    from esi.train.config import PretrainConfig

    return PretrainConfig(model=model, store=str(store), captions=str(captions), out=str(out), epochs=epochs,
                          batch_size=batch_size, warmup_epochs=min(1, epochs), decay_every=max(1, epochs), lr=lr,
                          seed=seed, resume=True, folds=list(range(1, 9)), freeze_ecg_stages=freeze_ecg_stages,
                          mix=[dict(m) for m in mix or []]).validate()


def run_pretrain(config: Any, *, launcher: str = "in-process", nproc_per_node: int = 2, nodes: int = 1,
                 namespace: str = "esi", image: str = "", timeout_s: float = 86400, cleanup: str = "on-success",
                 preset: str = "a100", api_client: Any = None, poll_s: float = 10.0,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Pretrain per LAUNCHER; returns checkpoint, run_dir, mlflow_run_id, samples_per_s, launcher, seconds."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher={launcher!r}; known: {', '.join(LAUNCHERS)}")
    t0 = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "launch-config.json"
    config.to_json(cfg_path)
    samples_per_s = None
    if launcher == "in-process":
        from esi.train.loop import pretrain

        r = pretrain(config, progress=False)
        samples_per_s = round(float(r.samples_per_s), 1)
    elif launcher == "torchrun":
        _torchrun(cfg_path, nproc_per_node)
    else:
        fields: dict[str, Any] = {"namespace": namespace, "config_path": str(cfg_path), "nodes": nodes,
                                  "nproc_per_node": nproc_per_node}
        if preset == "a100":
            fields["gpus_per_node"] = nproc_per_node
        if image:
            fields["image"] = image
        spec = JobSpec.preset(preset, **fields)
        ClusterJob(spec, launcher, api_client=api_client, poll_s=poll_s, timeout_s=timeout_s, cleanup=cleanup,
                   echo=echo).run()
    return _result(out, launcher, time.perf_counter() - t0, samples_per_s)


def _torchrun(cfg_path: Path, nproc: int) -> None:
    """DDP on this machine (gloo on CPU): the same command the cluster job runs, on one node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "esi.cli", "pretrain", "--config", str(cfg_path), "--resume", "--quiet"]
    log.info("running %s", " ".join(cmd))
    rc = subprocess.run(cmd, check=False).returncode
    if rc != 0:
        raise PipelineError(f"torchrun pretraining exited with {rc} (command: {' '.join(cmd)}); see its log above")


def _result(out: Path, launcher: str, seconds: float, samples_per_s: float | None) -> dict[str, Any]:
    checkpoint = out / "model.pt"
    if not checkpoint.is_file():
        raise PipelineError(f"pretraining ({launcher}) finished but wrote no {checkpoint}; check the job's log and "
                            "that the run directory is on the volume this step mounts")
    history = out / "history.json"
    info = json.loads(history.read_text()) if history.is_file() else {}
    return {"checkpoint": str(checkpoint), "run_dir": str(out), "launcher": launcher,
            "mlflow_run_id": info.get("mlflow_run_id") or "", "seconds": round(seconds, 1),
            **({"samples_per_s": samples_per_s} if samples_per_s is not None else {})}


@dataclass
class JobOutcome:
    """How a cluster job ended."""

    name: str
    kind: str
    phase: str  # the terminal condition type: Succeeded / Complete / Failed
    message: str
    seconds: float


class ClusterJob:
    """One PyTorchJob or TrainJob: create (or re-attach to our own), wait, stream, clean up."""

    def __init__(self, spec: JobSpec, kind: str, *, api_client: Any = None, poll_s: float = 10.0,
                 timeout_s: float = 86400, cleanup: str = "on-success",
                 echo: Callable[[str], None] = print) -> None:
        if kind not in _KINDS:
            raise ConfigError(f"job kind {kind!r}; known: {', '.join(_KINDS)}")
        if cleanup not in CLEANUP:
            raise ConfigError(f"cleanup={cleanup!r}; known: {', '.join(CLEANUP)}")
        from kubernetes import client

        self.spec, self.kind, self.poll_s, self.timeout_s, self.cleanup, self.echo = (
            spec, kind, poll_s, timeout_s, cleanup, echo)
        self.group, self.version, self.plural, self.kind_name = _KINDS[kind]
        self.api_client = api_client or _default_client()
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self._seen_conditions: set[tuple[str, str, str]] = set()
        self._log_lines = 0

    @property
    def where(self) -> str:
        return f"{self.kind_name} {self.spec.namespace}/{self.spec.name}"

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            hint = (" (the service account needs create/get/list/watch/delete on this kind: k8s/base/rbac.yaml)"
                    if exc.status in (401, 403) else "")
            hint = hint or (" (is the Training Operator / Trainer installed? its CRD is missing)"
                            if exc.status == 404 and what == "create" else "")
            raise PipelineError(f"Kubernetes API: {what} {self.where} failed: HTTP {exc.status} {exc.reason}: "
                                f"{_message(exc)}{hint}") from exc

    def _get(self) -> dict[str, Any]:
        return self._call("get", self.custom.get_namespaced_custom_object, self.group, self.version,
                          self.spec.namespace, self.plural, self.spec.name)

    def submit(self) -> None:
        """Create the job; a job of that name that is ours with the same description is re-attached to (a re-run
        of the step resumes it), a failed one of ours is replaced, anything else is refused."""
        from kubernetes.client.rest import ApiException

        body = self.spec.render(self.kind)
        try:
            self.custom.create_namespaced_custom_object(self.group, self.version, self.spec.namespace,
                                                        self.plural, body)
            self.echo(f"created {self.where}")
            return
        except ApiException as exc:
            if exc.status != 409:
                self._call("create", _raise, exc)
        existing = self._get()
        meta = existing.get("metadata", {})
        ours = (meta.get("labels", {}).get(OWNER_LABEL) == OWNER
                and meta.get("annotations", {}).get(SPEC_HASH) == self.spec.spec_hash())
        if not ours:
            raise PipelineError(f"{self.where} already exists and was not created by {OWNER} from this job "
                                "description; delete it (kubectl delete) or give the job another name")
        if self._terminal(existing)[0] == "Failed":
            self.echo(f"{self.where}: replacing our earlier failed job")
            self.delete()
            self._wait_gone()
            self._call("create", self.custom.create_namespaced_custom_object, self.group, self.version,
                       self.spec.namespace, self.plural, body)
        else:
            self.echo(f"{self.where} exists (ours, same description): attaching to it")

    def _wait_gone(self) -> None:
        from kubernetes.client.rest import ApiException

        wait_s = max(60.0, 10 * self.poll_s)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                self.custom.get_namespaced_custom_object(self.group, self.version, self.spec.namespace,
                                                         self.plural, self.spec.name)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(self.poll_s)
        raise PipelineError(f"{self.where} was not deleted within {wait_s:.0f} s; delete it by hand (kubectl delete)")

    def _terminal(self, obj: dict[str, Any]) -> tuple[str | None, str]:
        conditions = obj.get("status", {}).get("conditions") or []
        for c in conditions:
            if str(c.get("status")) == "True" and c.get("type") in (*_DONE[self.kind], "Failed"):
                return c["type"], c.get("message") or c.get("reason") or ""
        return None, ""

    def _stream(self, obj: dict[str, Any]) -> None:
        for c in obj.get("status", {}).get("conditions") or []:
            key = (str(c.get("type")), str(c.get("status")), str(c.get("reason")))
            if key not in self._seen_conditions:
                self._seen_conditions.add(key)
                self.echo(f"{self.where}: {c.get('type')}={c.get('status')} {c.get('reason') or ''} "
                          f"{c.get('message') or ''}".rstrip())
        self._stream_log()

    def _stream_log(self) -> None:
        """Print the rank-0 pod's new log lines (the pod may not exist yet: then nothing)."""
        from kubernetes.client.rest import ApiException

        selector, container = _RANK0[self.kind]
        try:
            pods = self.core.list_namespaced_pod(self.spec.namespace,
                                                 label_selector=selector.format(name=self.spec.name)).items
            if not pods:
                return
            text = self.core.read_namespaced_pod_log(pods[0].metadata.name, self.spec.namespace,
                                                     container=container)
        except ApiException as exc:
            if exc.status in (400, 404):  # container still creating, or pod replaced: try again next poll
                return
            raise
        lines = (text or "").splitlines()
        for line in lines[self._log_lines:]:
            self.echo(f"[{self.spec.name}] {line}")
        self._log_lines = max(self._log_lines, len(lines))

    def wait(self) -> JobOutcome:
        """Poll until the job succeeds, fails or TIMEOUT_S passes (then it counts as failed)."""
        t0 = time.monotonic()
        while True:
            obj = self._get()
            self._stream(obj)
            phase, message = self._terminal(obj)
            if phase:
                return JobOutcome(self.spec.name, self.kind, phase, message, time.monotonic() - t0)
            if time.monotonic() - t0 > self.timeout_s:
                return JobOutcome(self.spec.name, self.kind, "Timeout",
                                  f"not finished after {self.timeout_s:.0f} s", time.monotonic() - t0)
            time.sleep(self.poll_s)

    def delete(self) -> None:
        from kubernetes import client

        self._call("delete", self.custom.delete_namespaced_custom_object, self.group, self.version,
                   self.spec.namespace, self.plural, self.spec.name,
                   body=client.V1DeleteOptions(propagation_policy="Foreground"))
        self.echo(f"deleted {self.where}")

    def run(self) -> JobOutcome:
        """submit + wait + cleanup; raises PipelineError when the job failed or timed out."""
        self.submit()
        outcome = self.wait()
        ok = outcome.phase in _DONE[self.kind]
        # A timed-out job is stopped too (it would hold its GPUs), unless the policy is never.
        if self.cleanup == "always" or (self.cleanup == "on-success" and (ok or outcome.phase == "Timeout")):
            self.delete()
        if not ok:
            raise PipelineError(f"{self.where} {outcome.phase.lower()}: {outcome.message} "
                                f"(after {outcome.seconds:.0f} s; pods kept for 'kubectl logs' unless cleanup=always)")
        self.echo(f"{self.where} {outcome.phase} in {outcome.seconds:.0f} s")
        return outcome


def _raise(exc: Exception) -> None:
    raise exc


def _message(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or "")[:300]


def _default_client() -> Any:
    """In a pod: the service account; elsewhere: ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, FileNotFoundError) as exc:
            raise PipelineError(f"no Kubernetes credentials: not in a pod and no kubeconfig ({exc}); run inside "
                                "the cluster or set KUBECONFIG") from exc
    return client.ApiClient()


def spec_for(preset: str = "a100", **overrides: Any) -> JobSpec:
    """The job description the launcher would submit (docs, tests, ``esi pipeline`` dry runs)."""
    return replace(JobSpec.preset(preset), **overrides)
