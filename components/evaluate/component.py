"""Evaluate the pretrained model: Metrics, Markdown and HTML report artifacts."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def evaluate(work_root: str, model: Input[Model], store: Input[Dataset], metrics: Output[Metrics],
             report_md: Output[Markdown], report_html: Output[HTML], evaluation: Output[Artifact],
             task: str = "superdiagnostic", modes: str = "zero-shot,linear-probe,identification", seed: int = 0,
             mlflow_tracking_uri: str = ""):
    """Zero-shot, linear probe and identification on the held-out folds of the store."""
    from esi.evaluation.run import evaluate as run_evaluation
    from esi.pipeline.kfp_steps import copy_file, init_step, markdown_to_html, scalar_metrics, write_json

    p = init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    r = run_evaluation(model.metadata["checkpoint"], benchmark="synthetic", root_or_store=store.metadata["path"],
                       task=task, modes=[m.strip() for m in modes.split(",") if m.strip()], out=p["evaluate"],
                       progress=False, seed=seed)
    for name, value in scalar_metrics(r.headline()).items():
        metrics.log_metric(name, value)
    md = r.out / "report.md"
    copy_file(md, report_md.path)
    with open(report_html.path, "w") as fh:
        fh.write(markdown_to_html(md.read_text(), title="ESI evaluation", base=r.out))
    where = {"path": str(r.out), "report": str(md), "mlflow_run_id": r.mlflow_run_id or ""}
    for art in (report_md, report_html, evaluation):
        art.metadata.update(where)
    write_json(evaluation.path, {**where, "metrics": scalar_metrics(r.headline())})
