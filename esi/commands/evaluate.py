"""``esi evaluate``: zero-shot, linear probe, fine-tune, identification and baselines on a benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging


@domain_errors
def evaluate_cmd(
    model: str = typer.Option(
        ...,
        help="checkpoint file/folder, MLflow URI (models:/esi@champion, "
        "runs:/ID/path) or a model config name (random init)",
    ),
    benchmark: str = typer.Option(
        "ptbxl", help="ptbxl | icbeb | synthetic | custom | real (the shipped real-ECG benchmark's evaluation part)"
    ),
    root: Path = typer.Option(
        None, help="a store, or a dataset folder (prepared into a cached store); real: default the shipped records"
    ),
    task: str = typer.Option(
        None,
        help="PTB-XL: all | diagnostic | subdiagnostic | superdiagnostic | form | "
        "rhythm (default superdiagnostic); ICBEB/custom: all",
    ),
    modes: str = typer.Option(
        "zero-shot,linear-probe,identification",
        help="comma-separated: zero-shot, linear-probe, finetune, identification, baselines, mmd, or all",
    ),
    out: Path = typer.Option(None, help="report folder (default ESI_HOME/reports/eval-...)"),
    fractions: str = typer.Option("0.01,0.1,1", help="linear-probe label fractions"),
    seeds: str = typer.Option("0,1,2", help="seeds of the label-fraction subsets"),
    bootstrap: int = typer.Option(1000, min=0, help="bootstrap resamples for the 95% CI (0: none)"),
    batch_size: int = typer.Option(64, min=1, help="encoding batch size"),
    epochs: int = typer.Option(5, min=1, help="fine-tune: maximum epochs"),
    max_steps: int = typer.Option(None, min=1, help="fine-tune: cap of steps per epoch"),
    segment: float = typer.Option(None, help="identification segment (s); default 5 PTB-XL, 4 ICBEB"),
    pairing: str = typer.Option("auto", help="identification pairing: auto | records | segments"),
    mmd_reference: Path = typer.Option(
        None, help="mmd mode: reference store (default: the model's pretraining set, from its checkpoint)"
    ),
    prompts: str = typer.Option("caption", help="zero-shot prompt scheme: caption (pretraining text) | names"),
    score_rule: str = typer.Option(
        "contrast", help="zero-shot score: contrast (class similarity minus a normal-ECG caption's) | cosine"),
    kb_dir: Path = typer.Option(None, help="knowledge base for caption prompts (default ESI_HOME's, else corpus)"),
    scratch_lrs: str = typer.Option("3e-4,1e-3,3e-3", help="from-scratch baseline lr grid (chosen on validation)"),
    allow_contaminated: bool = typer.Option(
        False,
        "--allow-contaminated",
        help="evaluate even when test records were in the pretraining set (the report marks it CONTAMINATED)",
    ),
    seed: int = typer.Option(0, help="seed of label-fraction subsets, bootstrap and random init (not of folds)"),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not log to MLflow"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute embeddings"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Evaluate a model; writes metrics.json, report.md and plots, logs them to MLflow, prints the table."""
    setup_logging()
    from esi.errors import ConfigError
    from esi.evaluation.finetune import FinetuneConfig
    from esi.evaluation.run import evaluate

    try:
        fracs = [float(x) for x in fractions.split(",") if x.strip()]
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        lr_list = [float(x) for x in scratch_lrs.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--fractions {fractions!r} / --seeds {seeds!r} / --scratch-lrs {scratch_lrs!r}: use comma-separated "
            "numbers, e.g. --fractions 0.01,0.1,1 --seeds 0,1,2 --scratch-lrs 3e-4,1e-3"
        ) from None
    if not lr_list:
        raise ConfigError("--scratch-lrs needs at least one learning rate")
    if not seed_list:
        raise ConfigError("--seeds needs at least one seed")
    if benchmark == "real":
        from esi.evaluation.real_eval import evaluate_real

        real_modes = [m for m in ("zero-shot", "linear-probe", "baselines") if m in modes or modes == "all"]
        result = evaluate_real(model, root, out, modes=real_modes or ("zero-shot", "linear-probe", "baselines"),
                               prompt_scheme=prompts, score_rule=score_rule, kb_dir=kb_dir, n_bootstrap=bootstrap,
                               batch_size=batch_size, allow_contaminated=allow_contaminated, progress=not quiet,
                               use_cache=not no_cache, seed=seed, log_mlflow=not no_mlflow)
        _print(result)
        return
    if root is None:
        raise ConfigError("--root is required for this benchmark: a store, or a dataset folder to prepare")
    result = evaluate(
        model,
        benchmark,
        root,
        task,
        modes,
        out,
        fractions=fracs,
        seeds=seed_list,
        n_bootstrap=bootstrap,
        batch_size=batch_size,
        finetune_config=FinetuneConfig(epochs=epochs, max_steps_per_epoch=max_steps, seed=seed),
        identification_segment_s=segment,
        identification_pairing=pairing,
        mmd_reference=mmd_reference,
        prompt_scheme=prompts,
        score_rule=score_rule,
        kb_dir=kb_dir,
        allow_contaminated=allow_contaminated,
        scratch_lrs=lr_list,
        log_mlflow=not no_mlflow,
        progress=not quiet,
        use_cache=not no_cache,
        seed=seed,
    )
    _print(result)


def _print(result) -> None:  # noqa: ANN001 - an EvaluationResult
    typer.echo(result.table)
    typer.echo(f"report: {result.out}")
    for f in result.files:
        typer.echo(f"  {f}")
    if result.mlflow_run_id:
        typer.echo(f"MLflow run: {result.mlflow_run_id}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
