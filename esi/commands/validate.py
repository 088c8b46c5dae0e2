"""``esi validate STORE --report DIR [--strict] [--thresholds FILE]``."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging


@domain_errors
def validate_cmd(store: Path = typer.Argument(..., help="store folder (from 'esi data prepare')"),
                 report: Path = typer.Option(None, "--report", help="report folder (default: "
                                             "$ESI_HOME/reports/validation/<store name>)"),
                 strict: bool = typer.Option(False, "--strict", help="warnings count as critical"),
                 thresholds: Path = typer.Option(None, "--thresholds",
                                                 help="JSON/TOML file merged over the default thresholds"),
                 no_quarantine: bool = typer.Option(False, "--no-quarantine",
                                                    help="do not write STORE/quarantine.parquet"),
                 batch_size: int = typer.Option(256, min=1, help="records per batch of the signal pass"),
                 quiet: bool = typer.Option(False, "--quiet", help="no progress bar")) -> None:
    """Validate a store with Great Expectations; exit 1 when the step fails (critical expectations)."""
    setup_logging()
    from esi.validation.report import print_summary
    from esi.validation.validate import validate_store

    if report is None:
        from esi.settings import get_settings

        report = get_settings().reports_dir / "validation" / store.resolve().name
    result = validate_store(store, report, thresholds=thresholds, strict=strict,
                            write_quarantine=not no_quarantine, progress=not quiet, batch_size=batch_size)
    print_summary(result)
    if not result.passed:
        typer.secho(result.message(), err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(result.message())


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
