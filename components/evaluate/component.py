"""Evaluate the pretrained model: Metrics, Markdown and HTML report artifacts, on the synthetic held-out folds
(evaluate) and on the real-ECG benchmark's evaluation part (evaluate_real)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def evaluate(work_root: str, model: Input[Model], store: Input[Dataset], metrics: Output[Metrics],
             report_md: Output[Markdown], report_html: Output[HTML], evaluation: Output[Artifact],
             kb: Input[Artifact] = None, task: str = "superdiagnostic",
             modes: str = "zero-shot,linear-probe,identification", seed: int = 0, mlflow_tracking_uri: str = ""):
    """Zero-shot, linear probe and identification on the held-out folds of the store; the zero-shot prompts come
    from the run's knowledge base KB (as in ``esi run``)."""
    from esi.evaluation.run import evaluate as run_evaluation
    from esi.pipeline.kfp_steps import init_step, publish_evaluation

    p = init_step(work_root, mlflow_tracking_uri=mlflow_tracking_uri)
    kb_dir = (kb.metadata.get("path") if kb is not None else None) or None
    r = run_evaluation(model.metadata["checkpoint"], benchmark="synthetic", root_or_store=store.metadata["path"],
                       task=task, modes=[m.strip() for m in modes.split(",") if m.strip()], out=p["evaluate"],
                       progress=False, seed=seed, kb_dir=kb_dir)
    publish_evaluation(r, metrics, report_md, report_html, evaluation, title="ESI evaluation")


@dsl.component(**COMPONENT_OPTIONS)
def evaluate_real(work_root: str, model: Input[Model], store: Input[Dataset], metrics: Output[Metrics],
                  report_md: Output[Markdown], report_html: Output[HTML], evaluation: Output[Artifact],
                  kb: Input[Artifact] = None, modes: str = "zero-shot,linear-probe,baselines", n_bootstrap: int = 1000,
                  seed: int = 0):
    """The real-ECG benchmark (esi.evaluation.real_eval.evaluate_real): zero-shot per condition and the 5-fold
    cross-validated linear probe against a random-init encoder, with bootstrap CIs, on the evaluation part of
    the real benchmark store (N_BOOTSTRAP resamples per interval). A store without a path (real_benchmark=False)
    is skipped: nothing to register."""
    from esi.pipeline.kfp_steps import init_step, publish_evaluation, publish_skipped

    p = init_step(work_root)
    if not store.metadata.get("path"):
        publish_skipped(report_md, report_html, evaluation, title="Real-ECG benchmark",
                        reason=f"skipped: {store.metadata.get('skipped') or 'the real benchmark store has no path'}")
        return
    from esi.evaluation.real_eval import evaluate_real as run_real

    kb_dir = (kb.metadata.get("path") if kb is not None else None) or None
    r = run_real(model.metadata["checkpoint"], store.metadata["path"], p["evaluate_real"],
                 modes=[m.strip() for m in modes.split(",") if m.strip()], kb_dir=kb_dir, n_bootstrap=n_bootstrap,
                 progress=False, seed=seed)
    publish_evaluation(r, metrics, report_md, report_html, evaluation, title="ESI real-ECG benchmark")
