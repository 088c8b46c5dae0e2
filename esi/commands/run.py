"""``esi run``: the whole pipeline on the embedded defaults (what ``make run`` calls)."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging


@domain_errors
def run(out: Path = typer.Option(Path(".esi/run"), help="folder for every output of the run"),
        subjects: int = typer.Option(120, min=2, help="synthetic subjects"),
        records_per_subject: int = typer.Option(5, min=2, help="records per synthetic subject"),
        epochs: int = typer.Option(3, min=1, help="pretraining epochs"),
        model: str = typer.Option("esi_cpu", help="model config to pretrain"),
        stages: str = typer.Option(None, help="comma list of stages, or 'STAGE-' for STAGE onwards "
                                   "(synth,prepare,validate,kb,caption,pretrain,evaluate)"),
        seed: int = typer.Option(0, help="seed of the generator and of training"),
        workers: int = typer.Option(0, min=0, help="worker processes for generation and preparation"),
        gate: bool = typer.Option(True, "--gate/--no-gate", help="stop when validation fails"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars")) -> None:
    """Run synth -> prepare -> validate -> kb -> caption -> pretrain -> evaluate and print where results are.

    Re-running resumes: finished work is skipped.
    """
    setup_logging()
    from esi.pipeline.local import RunConfig, parse_stages, run_local

    cfg = RunConfig(out=out, subjects=subjects, records_per_subject=records_per_subject, epochs=epochs,
                    model=model, stages=parse_stages(stages), seed=seed, workers=workers, gate=gate)

    def report(name: str, seconds: float, notes: dict) -> None:
        short = {k: v for k, v in notes.items() if not isinstance(v, (dict, list))}
        typer.secho(f"[{name}] done in {seconds:.1f} s {short}", fg=typer.colors.GREEN)

    result = run_local(cfg, progress=not quiet, on_stage=report)
    typer.echo("\nResults:")
    for what, where in result.outputs.items():
        typer.echo(f"  {what:<36} {where}")
    typer.echo(f"  {'total time (s)':<36} {sum(result.seconds.values()):.1f}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
