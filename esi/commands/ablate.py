"""``esi ablate``: pretrain + evaluate one run per ablation (no CQA, no captioning/contrastive loss, backbone,
pretraining-set size, misaligned pairs) and print the summary table."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging


@domain_errors
def ablate_cmd(
    ablations: str = typer.Option(
        "all",
        help="comma-separated: full, no_cqa, no_caption_loss, "
        "no_contrastive_loss, backbone_vit, backbone_xresnet, size_25, size_50, "
        "misaligned_20, misaligned_50, or all",
    ),
    model: str = typer.Option("esi_tiny", help="base model config"),
    store: Path = typer.Option(..., help="pretraining store"),
    captions: Path = typer.Option(..., help="CQA captions parquet (esi caption)"),
    epochs: int = typer.Option(30, min=1),
    batch_size: int = typer.Option(48, min=1),
    lr: float = typer.Option(5e-5),
    max_steps: int = typer.Option(None, min=1, help="cap of optimizer steps per run (quick runs)"),
    folds: str = typer.Option("1,2,3,4,5,6,7,8", help="pretraining folds (keep 9/10 out for evaluation)"),
    benchmark: str = typer.Option("ptbxl", help="evaluation benchmark"),
    root: Path = typer.Option(None, help="evaluation store or dataset (default: --store)"),
    task: str = typer.Option(None, help="evaluation task"),
    modes: str = typer.Option("zero-shot,linear-probe,identification", help="evaluation modes"),
    out: Path = typer.Option(None, help="output folder (default ESI_HOME/runs/ablations-<time>)"),
    seed: int = typer.Option(0),
    no_mlflow: bool = typer.Option(False, "--no-mlflow", help="no MLflow logging"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Run the ablation study: one pretraining + evaluation per ablation, one summary table."""
    setup_logging()
    import time

    from esi.errors import ConfigError
    from esi.settings import get_settings
    from esi.train.ablations import ablation_table, parse_ablations, run_ablations
    from esi.train.config import PretrainConfig

    try:
        fold_list = [int(f) for f in folds.split(",") if f.strip()] or None
    except ValueError:
        raise ConfigError(
            f"--folds {folds!r}: use comma-separated fold numbers, e.g. 1,2,3,4,5,6,7,8"
        ) from None
    chosen = parse_ablations(ablations)
    base = PretrainConfig(
        model=model,
        store=str(store),
        captions=str(captions),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_steps=max_steps,
        folds=fold_list,
        seed=seed,
        mlflow=not no_mlflow,
    )
    out = out or get_settings().runs_dir / f"ablations-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run_ablations(
        base,
        chosen,
        benchmark=benchmark,
        root=root or store,
        task=task,
        out=out,
        modes=modes,
        progress=not quiet,
        log_mlflow=not no_mlflow,
        seed=seed,
    )
    typer.echo(ablation_table(summary))
    from esi.evaluation.tables import load_runs, render

    # Table 5 in the paper's shape: each ablation's runs, and both zero-shot prompt schemes of each
    _, ablation_metrics = load_runs([out])
    typer.echo(render(list(ablation_metrics.values()), ablation_metrics))
    typer.echo(f"results: {out / 'ablations.json'} (tables: esi report {out})")


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate_cmd)
