"""MLflow logging of a pretraining run (rank 0 only): params, buffered metrics, artifacts, run status."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MlflowLogger:
    """Thin wrapper over MlflowClient with an explicit run id (no global active run), buffered metrics."""

    def __init__(self, experiment: str | None, run_name: str | None, run_id: str | None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        from esi.settings import get_settings

        settings = get_settings()
        uri = settings.tracking_uri
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        name = experiment or settings.mlflow_experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            # Local stores keep artifacts under ESI_HOME, not ./mlruns of whatever directory we run in.
            location = None
            if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
                location = (settings.home.resolve() / "mlartifacts" / name).as_uri()
            exp_id = self.client.create_experiment(name, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        self.new = True
        if run_id:
            try:
                self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                self.new = False
            except Exception:
                log.warning("MLflow run %s of the checkpoint is not in %s: starting a new run", run_id, uri)
                run_id = None
        if run_id is None:
            run = self.client.create_run(exp_id, run_name=run_name, tags={"esi.stage": "pretrain"})
            run_id = run.info.run_id
        self.run_id: str = run_id
        self.uri = uri
        self._buffer: list[Any] = []

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            try:
                self.client.log_batch(self.run_id, params=items[i:i + 100])
            except Exception as exc:  # a resumed run may not change a logged param: keep training
                log.warning("MLflow params not logged: %s", exc)

    def metrics(self, values: dict[str, float | None], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), now, step) for k, v in values.items()
                            if v is not None and math.isfinite(v))

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:900], self._buffer[900:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str) -> None:
        with contextlib.suppress(Exception):
            self.flush()
        self.client.set_terminated(self.run_id, status=status)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
