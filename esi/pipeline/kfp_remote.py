"""Submit and schedule compiled pipelines on a Kubeflow Pipelines endpoint through ``kfp.Client``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from esi.errors import ConfigError, PipelineError


def check_cron(cron: str) -> str:
    """KFP cron has six fields, seconds first ('0 0 2 * * *' = 02:00 every day); five-field cron is refused."""
    fields = cron.split()
    if len(fields) != 6:
        raise ConfigError(f"--cron {cron!r}: KFP needs 6 fields, seconds first (e.g. '0 0 2 * * *' for 02:00 "
                          f"daily); got {len(fields)}")
    return " ".join(fields)


def connect(endpoint: str, namespace: str | None = None) -> Any:
    """A kfp.Client for ENDPOINT (it checks /healthz at once: an unreachable endpoint fails here, by name)."""
    import kfp

    try:
        return kfp.Client(host=endpoint, namespace=namespace)
    except Exception as exc:  # urllib3 MaxRetryError, kfp_server_api.ApiException...
        raise PipelineError(f"cannot reach the KFP endpoint {endpoint}: {exc.__class__.__name__}: {exc}; check the "
                            "URL (e.g. kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 then "
                            "http://localhost:8080)") from exc


def check_package(path: str | Path) -> str:
    return _package(path)


def _package(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline package {path} does not exist; run 'esi pipeline compile' first")
    return str(path)


def _experiment_id(client: Any, name: str, namespace: str | None) -> str:
    try:
        return client.create_experiment(name, namespace=namespace).experiment_id
    except Exception as exc:  # kfp_server_api.ApiException or a connection error: name the endpoint
        raise PipelineError(f"cannot get or create the KFP experiment {name!r}: {exc}") from exc


def submit(client: Any, package: str | Path, *, experiment: str = "esi", run_name: str | None = None,
           params: dict[str, Any] | None = None, namespace: str | None = None) -> dict[str, str]:
    """Create a run of PACKAGE in EXPERIMENT; returns run_id and run_name."""
    pkg = _package(package)
    name = run_name or f"{Path(pkg).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        r = client.create_run_from_pipeline_package(pkg, arguments=params or {}, run_name=name,
                                                    experiment_name=experiment, namespace=namespace)
    except Exception as exc:
        raise PipelineError(f"submitting {pkg} failed: {exc}") from exc
    return {"run_id": r.run_id, "run_name": name}


def schedule(client: Any, package: str | Path, *, cron: str, experiment: str = "esi-batch",
             job_name: str = "esi-batch-scoring", params: dict[str, Any] | None = None,
             namespace: str | None = None) -> dict[str, str]:
    """A recurring run: max_concurrency=1 (runs never overlap) and no_catchup (missed slots are skipped)."""
    cron = check_cron(cron)
    pkg = _package(package)
    exp = _experiment_id(client, experiment, namespace)
    try:
        r = client.create_recurring_run(exp, job_name, cron_expression=cron, pipeline_package_path=pkg,
                                        params=params or {}, max_concurrency=1, no_catchup=True, enabled=True)
    except Exception as exc:
        raise PipelineError(f"scheduling {pkg} failed: {exc}") from exc
    return {"recurring_run_id": r.recurring_run_id}
