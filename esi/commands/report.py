"""``esi report RUN_DIR ...``: the paper-shaped Tables 2-5 merged from one or several evaluation runs."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging


@domain_errors
def report_cmd(
    runs: list[Path] = typer.Argument(
        ...,
        metavar="RUN_DIR...",
        help="evaluation run folders (metrics.json) or 'esi ablate' output folders (ablations.json)",
    ),
    paper: bool = typer.Option(
        False, "--paper", help="also print the paper's published figures (in separate tables, labelled published)"
    ),
    out: Path = typer.Option(None, help="also write the Markdown to this file"),
) -> None:
    """Merge evaluation runs into Tables 2-5 (arrhythmia, zero-shot, identification, ablations)."""
    setup_logging()
    from esi.data.store import atomic_write_bytes
    from esi.evaluation.tables import load_runs, render

    metrics, ablations = load_runs(runs)
    text = render(metrics, ablations, paper=paper)
    typer.echo(text)
    if out:
        atomic_write_bytes(out, text.encode())
        typer.echo(f"written: {out}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
