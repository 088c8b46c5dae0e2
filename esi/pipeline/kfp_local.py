"""``esi pipeline run --local``: the esi_full Kubeflow pipeline on this machine through kfp.local.

Each step runs as a subprocess of this Python (SubprocessRunner, no venv per step), exactly the component code a
cluster runs in its pods; the cluster-only settings (PVC, Secret, GPUs) are ignored locally. The result records
each step's wall time (parsed from kfp.local's own task log lines, under each task's display name), where the
reports, model and bento are, and the headline metrics of both evaluations (synthetic and real-ECG).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esi.errors import ConfigError, PipelineError

REPO = Path(__file__).resolve().parents[2]  # components/ and pipelines/ live at the repository root
PIPELINES = {"esi_full": ("pipelines.esi_full", "esi_full"), "batch_scoring": ("pipelines.batch_scoring",
                                                                               "batch_scoring")}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")


@dataclass
class PipelineRun:
    """What a local pipeline run did: per-step times (s, summed over ParallelFor iterations), outputs."""

    work_root: str
    pipeline_root: str
    steps: dict[str, float] = field(default_factory=dict)
    tasks: list[tuple[str, float, str]] = field(default_factory=list)  # (step, seconds, status) in end order
    outputs: dict[str, str] = field(default_factory=dict)
    total_s: float = 0.0
    # {"metrics": synthetic evaluation headline, "real": real-ECG benchmark headline} (esi run's evaluate notes)
    headline: dict[str, dict[str, float]] = field(default_factory=dict)


class _TaskTimes(logging.Filter):
    """Collect kfp.local's 'Executing task' / 'finished with status' lines into step durations.

    A filter on the root logger, not a handler: kfp.local swaps the root logger's handlers around every task.
    """

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, list[float]] = defaultdict(list)
        self.done: list[tuple[str, float, str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self._note(record)
        return True

    def _note(self, record: logging.LogRecord) -> None:
        text = _ANSI.sub("", record.getMessage())
        if m := _START.search(text):
            self.started[m.group(1)].append(record.created)
        elif (m := _END.search(text)) and self.started[m.group(1)]:
            t0 = self.started[m.group(1)].pop(0)
            self.done.append((m.group(1), round(record.created - t0, 2), m.group(2)))


def load_pipeline(name: str) -> Any:
    """The pipeline function of pipelines/NAME.py (the repository root goes on sys.path)."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    if not (REPO / "pipelines").is_dir():
        raise PipelineError(f"pipelines/ not found at {REPO}: run from a source checkout of ESI (pip install -e .)")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import importlib

    module, fn = PIPELINES[name]
    return getattr(importlib.import_module(module), fn)


def compile_pipelines(out_dir: str | Path | None = None) -> list[Path]:
    """Compile every pipeline to OUT_DIR/NAME.yaml (default: pipelines/ next to the sources)."""
    from kfp import compiler

    out = Path(out_dir) if out_dir else REPO / "pipelines"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PIPELINES:
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(load_pipeline(name), str(path))
        paths.append(path)
    return paths


def run_pipeline_locally(work_root: str | Path, arguments: dict[str, Any] | None = None, *,
                         pipeline: str = "esi_full", echo: Any = print) -> PipelineRun:
    """Run PIPELINE under kfp.local with WORK_ROOT and ARGUMENTS over its defaults; raises PipelineError naming
    the failed step. Steps share ESI_HOME with this process (one MLflow store, one bento store)."""
    import kfp
    from kfp import local

    from esi.settings import get_settings

    if tuple(int(x) for x in kfp.__version__.split(".")[:2]) < (2, 16):
        raise PipelineError(f"kfp {kfp.__version__} cannot run esi_full locally: its local runner supports "
                            "ParallelFor and dsl.If only from 2.16 on; pip install 'kfp>=2.16'")

    work_root = Path(work_root).resolve()
    work_root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ESI_HOME", str(get_settings().home.resolve()))
    fn = load_pipeline(pipeline)
    args = {"work_root": str(work_root), **(arguments or {})}
    unknown = sorted(set(args) - set(fn.component_spec.inputs or {}))
    if unknown:
        known = ", ".join(sorted(fn.component_spec.inputs or {}))
        raise ConfigError(f"unknown parameter(s) {unknown} of pipeline {pipeline}; known: {known}")
    pipeline_root = work_root / "kfp"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    times = _TaskTimes()
    root = logging.getLogger()
    root.addFilter(times)
    t0 = time.perf_counter()
    try:
        fn(**args)
    except Exception as exc:  # kfp.local raises RuntimeError naming the task; keep the message, add our context
        failed = [t for t, _, status in times.done if status != "SUCCESS"]
        raise PipelineError(f"pipeline {pipeline} failed at step {failed[-1] if failed else '?'}: {exc}; step logs "
                            f"are above, artifacts under {pipeline_root}") from exc
    finally:
        root.removeFilter(times)
    shown = display_names(fn)
    tasks = [(shown.get(step, step), seconds, status) for step, seconds, status in times.done]
    run = PipelineRun(work_root=str(work_root), pipeline_root=str(pipeline_root), tasks=tasks,
                      total_s=round(time.perf_counter() - t0, 1))
    for step, seconds, _ in tasks:
        run.steps[step] = round(run.steps.get(step, 0.0) + seconds, 2)
    run.outputs, run.headline = _outputs(pipeline_root)
    from esi.data.store import atomic_write_json

    atomic_write_json(work_root / "pipeline-run.json", {"steps": run.steps, "tasks": run.tasks,
                                                        "outputs": run.outputs, "headline": run.headline,
                                                        "total_s": run.total_s})
    return run


def display_names(fn: Any) -> dict[str, str]:
    """Task name -> display name, for the tasks that have one (a component used twice, as caption is for the
    run's store and the real benchmark's, gets the task name caption-2 from kfp; its display name says which)."""
    spec = fn.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    return {key: task.task_info.name for dag in dags for key, task in dag.tasks.items()
            if task.task_info.name and task.task_info.name != key}


def _latest_run(pipeline_root: Path) -> Path | None:
    runs = sorted((p for p in pipeline_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def _outputs(pipeline_root: Path) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """Where the reports, the registered model, the bento and the scores are, and the evaluations' headline
    metrics (from the steps' artifacts)."""
    run = _latest_run(pipeline_root)
    out: dict[str, str] = {}
    if run is None:
        return out, {}
    meta: dict[str, dict[str, Any]] = {}
    params: dict[str, dict[str, Any]] = {}
    for f in run.glob("*/executor_output.json"):
        data = json.loads(f.read_text())
        params[f.parent.name] = data.get("parameterValues", {})
        for name, arts in data.get("artifacts", {}).items():
            for a in arts.get("artifacts", []):
                meta[f"{f.parent.name}.{name}"] = a.get("metadata", {})
    pick = [("validation report", "validate.report", "report"), ("ECG store", "prepare-merge.store", "path"),
            ("evaluation report", "evaluate.report_md", "report"),
            ("evaluation report (HTML artifact)", "evaluate.report_html", None),
            ("real-ECG benchmark store", "prepare-real.store", "path"),
            ("real-ECG evaluation report", "evaluate-real.report_md", "report"),
            ("real-ECG evaluation report (HTML)", "evaluate-real.report_html", None),
            ("pretrained model", "pretrain.model", "checkpoint"), ("registered model", "register.registered",
                                                                    "model_uri"),
            ("model card", "register.registered", "card"), ("served model", "promote.decision", "model_uri"),
            ("bento", "build-bento.bento", "tag"), ("scores", "score-merge.summary", "path")]
    for label, key, field_ in pick:
        if key in meta and not meta[key].get("skipped"):
            out[label] = str(meta[key].get(field_, "")) if field_ else str(run / key.replace(".", "/"))
    if "promote" in params:
        out["promoted to champion"] = str(params["promote"].get("passed"))
    headline = {name: _numbers(meta.get(key)) for name, key in (("metrics", "evaluate.metrics"),
                                                               ("real", "evaluate-real.metrics"))}
    return {k: v for k, v in out.items() if v}, {k: v for k, v in headline.items() if v}


def _numbers(metadata: dict[str, Any] | None) -> dict[str, float]:
    """A Metrics artifact's logged values (its metadata holds them, plus kfp's display_name)."""
    return {k: float(v) for k, v in (metadata or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
