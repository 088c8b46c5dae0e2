"""Reports: metrics JSON, a Markdown table shaped like the paper's tables, PNG plots, and MLflow logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODE_TITLES = {  # what was evaluated, never "ESI" for a model that may be a random init
    "zero_shot": "zero-shot",
    "linear_probe": "linear probe",
    "linear_probe_random_init": "random init, linear probe",
    "finetune": "fine-tune",
    "supervised_scratch": "supervised from scratch",
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def markdown_table(metrics: dict, *, paper: bool = False) -> str:
    """report.md of one run: the paper-shaped Tables 2-5 (esi.evaluation.tables), MMD, throughput."""
    from esi.evaluation.tables import model_label, render

    b = metrics["benchmark"]
    modes = metrics["modes"]
    lines = [
        f"# {b['benchmark']} / {b['task']}: {b['n_classes']} classes, test records {b['records']['test']}",
        "",
        f"Model: {model_label(metrics['model'])}, `{metrics['model']['ref']}` (digest {metrics['model']['digest']})",
        "",
        render([metrics], paper=paper),
    ]
    if "mmd" in modes:
        m = modes["mmd"]
        lines += [
            f"MMD² (RBF, median heuristic) between {m['reference']} and the test embeddings: "
            f"{m['mmd2']:.4f} (n = {m['n_reference']} / {m['n_test']})",
            "",
        ]
    t = metrics.get("throughput", {})
    if t:
        eps = t.get("embeddings_per_s")
        lines.append(
            f"Wall time {t.get('wall_s', 0):.1f} s; encoding {_fmt(eps, 1)} embeddings/s "
            f"({t.get('computed', 0)} computed, {t.get('cached', 0)} from cache)."
        )
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(
    y_test: np.ndarray,
    scores: dict[str, np.ndarray],
    class_names: list[str],
    path: Path,
    max_classes: int = 12,
) -> Path | None:
    """ROC curves per class (one panel per method), at most ``max_classes`` classes."""
    from sklearn.metrics import roc_curve

    if not scores:
        return None
    plt = _plt()
    n = len(scores)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.2), squeeze=False)
    for ax, (name, s) in zip(axes[0], scores.items(), strict=True):
        for c, cname in enumerate(class_names[:max_classes]):
            col = y_test[:, c]
            if col.min() == col.max():
                continue
            fpr, tpr, _ = roc_curve(col, s[:, c])
            ax.plot(fpr, tpr, lw=1.2, label=cname)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(title=MODE_TITLES.get(name, name), xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_class(per_class: dict[str, dict[str, float]], class_names: list[str], path: Path) -> Path | None:
    """Grouped bars of per-class test AUC, one colour per method."""
    if not per_class:
        return None
    plt = _plt()
    width = 0.8 / len(per_class)
    x = np.arange(len(class_names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(class_names) * len(per_class)), 4))
    for k, (name, aucs) in enumerate(per_class.items()):
        vals = [aucs.get(c, np.nan) for c in class_names]
        ax.bar(x + k * width, vals, width, label=MODE_TITLES.get(name, name))
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xticks(x + 0.4 - width / 2, class_names, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="test AUC", ylim=(0, 1), title="per-class AUC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_label_fraction(modes: dict, path: Path) -> Path | None:
    """Macro AUC against the fraction of training labels, pretrained vs random init."""
    series = {k: modes[k]["fractions"] for k in ("linear_probe", "linear_probe_random_init") if k in modes}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, fr in series.items():
        xs = [v["fraction"] * 100 for v in fr.values()]
        ys = [v["macro_auc"] for v in fr.values()]
        es = [v.get("macro_auc_std", 0.0) for v in fr.values()]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=MODE_TITLES.get(name, name))
    if "zero_shot" in modes:
        ax.axhline(modes["zero_shot"]["macro_auc"], color="gray", ls=":", label=MODE_TITLES["zero_shot"])
    ax.set_xscale("log")
    ax.set(xlabel="training labels (%)", ylabel="test macro AUC", title="label-fraction curve")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_to_mlflow(
    metrics: dict,
    out: Path,
    files: list[Path],
    *,
    run_name: str | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log params, flat metrics and the report files to MLflow; returns the run id.

    A new experiment gets its artifact location under ESI_HOME (not ./mlruns of the working directory).
    """
    import mlflow

    from esi.settings import get_settings

    settings = get_settings()
    mlflow.set_tracking_uri(tracking_uri or settings.tracking_uri)
    name = experiment or f"{settings.mlflow_experiment}-evaluation"
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = (settings.home / "mlartifacts" / name).resolve()
        location.mkdir(parents=True, exist_ok=True)
        exp_id = client.create_experiment(name, artifact_location=location.as_uri())
    else:
        exp_id = exp.experiment_id
    b = metrics["benchmark"]
    # Inside an active run (a pipeline step, a training script) the evaluation becomes a child run.
    nested = mlflow.active_run() is not None
    title = run_name or f"eval-{b['benchmark']}-{b['task']}"
    with mlflow.start_run(experiment_id=exp_id, run_name=title, nested=nested) as run:
        mlflow.log_params(
            {
                "model_ref": str(metrics["model"]["ref"])[:500],
                "model_digest": metrics["model"]["digest"],
                "benchmark": b["benchmark"],
                "task": b["task"],
                "n_classes": b["n_classes"],
                "modes": ",".join(metrics["modes"]),
                "n_test": b["records"]["test"],
            }
        )
        mlflow.log_metrics(flat_metrics(metrics))
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="evaluation")
        mlflow.set_tags({"esi.stage": "evaluate", "esi.out": str(out)})
        return run.info.run_id


def flat_metrics(metrics: dict) -> dict[str, float]:
    """Headline numbers as flat MLflow metric names (zero_shot_macro_auc, linear_probe_1pct_macro_auc ...)."""
    flat: dict[str, float] = {}
    for mode, m in metrics["modes"].items():
        if "fractions" in m:
            for frac in m["fractions"].values():
                tag = f"{frac['fraction'] * 100:g}pct".replace(".", "_")
                flat[f"{mode}_{tag}_macro_auc"] = frac["macro_auc"]
                flat[f"{mode}_{tag}_f1_macro"] = frac["f1_macro"]
            continue
        for key in ("macro_auc", "f1_macro", "top1_accuracy", "mmd2"):
            if key in m and m[key] is not None:
                flat[f"{mode}_{key}"] = float(m[key])
        if m.get("ci95") and m["ci95"][0] is not None:
            flat[f"{mode}_macro_auc_ci_low"], flat[f"{mode}_macro_auc_ci_high"] = map(float, m["ci95"])
        for scheme, r in (m.get("schemes") or {}).items():  # zero-shot under each prompt scheme (ablation)
            flat[f"{mode}_{scheme}_prompts_macro_auc"] = float(r["macro_auc"])
        for rule, r in (m.get("score_rules") or {}).items():  # zero-shot under each score rule (ablation)
            flat[f"{mode}_{rule}_score_macro_auc"] = float(r["macro_auc"])
    t = metrics.get("throughput", {})
    if t.get("embeddings_per_s"):
        flat["embeddings_per_s"] = float(t["embeddings_per_s"])
    if t.get("wall_s"):
        flat["wall_s"] = float(t["wall_s"])
    return {k: v for k, v in flat.items() if np.isfinite(v)}
