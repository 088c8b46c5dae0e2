"""Evaluation metrics under one naming scheme: ``<benchmark>.<task>.<mode>.<metric>``.

Examples: ``synthetic.superdiagnostic.zero_shot.macro_auc``, ``ptbxl.superdiagnostic.linear_probe_1pct.macro_auc``,
``synthetic.superdiagnostic.identification.top1_accuracy``. The mode and metric parts are the names
:func:`esi.evaluation.report.flat_metrics` gives (``zero_shot_macro_auc`` -> mode ``zero_shot``, metric
``macro_auc``; label fractions stay in the mode: ``linear_probe_1pct``), prefixed by the evaluation's benchmark
and task, so metrics of several evaluations sit side by side on one model version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esi.errors import RegistryError

# Metrics where a lower value is better (everything else: higher is better) — used by --compare.
LOWER_IS_BETTER = ("mmd2", "loss", "ece", "brier", "wall_s")


@dataclass
class Evaluation:
    """One evaluation folder (esi evaluate --out DIR): its metrics.json and where it came from."""

    path: Path
    metrics: dict[str, Any]

    @property
    def benchmark(self) -> str:
        return str(self.metrics["benchmark"]["benchmark"])

    @property
    def task(self) -> str:
        return str(self.metrics["benchmark"]["task"])

    @property
    def model_digest(self) -> str | None:
        return (self.metrics.get("model") or {}).get("digest")


def read_evaluation(path: str | Path) -> Evaluation:
    """Read ``DIR/metrics.json`` (or the file itself); a missing or malformed file is a RegistryError."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise RegistryError(f"evaluation {path}: no metrics.json there; pass the --out folder of "
                            "'esi evaluate' (it holds metrics.json and report.md)")
    try:
        metrics = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise RegistryError(f"evaluation {file} is not valid JSON ({exc}); re-run 'esi evaluate'") from exc
    for key in ("benchmark", "modes"):
        if key not in metrics:
            raise RegistryError(f"evaluation {file} has no {key!r} field: not an 'esi evaluate' metrics.json")
    if "benchmark" not in metrics["benchmark"] or "task" not in metrics["benchmark"]:
        raise RegistryError(f"evaluation {file}: field benchmark.benchmark/benchmark.task missing; re-run "
                            "'esi evaluate'")
    return Evaluation(file.parent, metrics)


def _split_flat(key: str, modes: list[str]) -> tuple[str, str] | None:
    """'linear_probe_1pct_macro_auc' -> ('linear_probe_1pct', 'macro_auc') given the evaluation's modes."""
    for mode in sorted(modes, key=len, reverse=True):  # linear_probe_random_init before linear_probe
        if key.startswith(mode + "_"):
            rest = key[len(mode) + 1:]
            head, _, tail = rest.partition("pct_")
            if tail and head.replace("_", "").isdigit():  # a label fraction: keep it in the mode
                return f"{mode}_{head}pct", tail
            return mode, rest
    return None  # throughput figures (embeddings_per_s, wall_s) are not model metrics


def evaluation_metrics(ev: Evaluation) -> dict[str, float]:
    """The evaluation's headline metrics, named ``<benchmark>.<task>.<mode>.<metric>``."""
    from esi.evaluation.report import flat_metrics

    modes = list(ev.metrics["modes"])
    out: dict[str, float] = {}
    for key, value in flat_metrics(ev.metrics).items():
        split = _split_flat(key, modes)
        if split:
            out[f"{ev.benchmark}.{ev.task}.{split[0]}.{split[1]}"] = float(value)
    return out


def evaluation_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """Rows of the model card's evaluation table: benchmark, task, mode, metric, value, CI (or None)."""
    rows = []

    def add(mode: str, metric: str, value: Any, ci: Any = None) -> None:
        if value is None:
            return
        has_ci = bool(ci) and ci[0] is not None
        rows.append({"benchmark": ev.benchmark, "task": ev.task, "mode": mode, "metric": metric,
                     "value": float(value), "ci95": [float(ci[0]), float(ci[1])] if has_ci else None,
                     "name": f"{ev.benchmark}.{ev.task}.{mode}.{metric}"})

    for mode, m in ev.metrics["modes"].items():
        if "fractions" in m:
            for frac in m["fractions"].values():
                tag = f"{frac['fraction'] * 100:g}pct".replace(".", "_")
                add(f"{mode}_{tag}", "macro_auc", frac.get("macro_auc"), frac.get("ci95"))
                add(f"{mode}_{tag}", "f1_macro", frac.get("f1_macro"))
            continue
        add(mode, "macro_auc", m.get("macro_auc"), m.get("ci95"))
        for key in ("f1_macro", "top1_accuracy", "mmd2"):
            add(mode, key, m.get(key))
    return rows


def higher_is_better(metric: str) -> bool:
    """Direction of a metric for --compare (by its last name part)."""
    last = metric.rsplit(".", 1)[-1]
    return not any(last == k or last.endswith("_" + k) for k in LOWER_IS_BETTER)


TAG_PREFIX = "metric."


def metric_tags(metrics: dict[str, float]) -> dict[str, str]:
    """Version tags holding the metrics (``metric.<name>``): the registry's own record, readable everywhere."""
    return {f"{TAG_PREFIX}{k}": repr(float(v)) for k, v in metrics.items()}


def metrics_from_tags(tags: dict[str, str]) -> dict[str, float]:
    """Inverse of :func:`metric_tags` (tags that do not parse as numbers are skipped)."""
    out = {}
    for k, v in tags.items():
        if k.startswith(TAG_PREFIX):
            try:
                out[k[len(TAG_PREFIX):]] = float(v)
            except ValueError:
                continue
    return out
