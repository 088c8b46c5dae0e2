"""``esi register``, ``esi promote``, ``esi models list | show``: the MLflow model registry."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging

models_app = typer.Typer(help="Registered models: versions, aliases, validation status, model cards.",
                         no_args_is_help=True)


def _name(name: str | None) -> str:
    from esi.settings import get_settings

    return name or get_settings().registered_model_name


@domain_errors
def register_cmd(
    run: Path = typer.Option(..., help="pretraining run folder (holds model.pt) or the checkpoint file"),
    evaluation: list[Path] = typer.Option([], "--evaluation", help="an 'esi evaluate --out' folder; repeatable"),
    name: str = typer.Option(None, help="registered model name (default: ESI_REGISTERED_MODEL_NAME, esi)"),
    alias: str = typer.Option("candidate", help="alias set on a new version ('' for none)"),
    reference: int = typer.Option(None, min=0, help="pretraining records embedded as the drift reference "
                                  "(default: ESI_REGISTRY_REFERENCE_RECORDS, 512; 0: none)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Log the run's model to MLflow, register it as a version (with its model card), alias it candidate."""
    setup_logging()
    from esi.registry import register_run

    reg = register_run(run, evaluation, _name(name), alias=alias or None, reference_records=reference,
                       progress=not quiet)
    for w in reg.warnings:
        typer.secho(f"warning: {w}", err=True, fg=typer.colors.YELLOW)
    what = "registered" if reg.created else "already registered (same checkpoint digest)"
    typer.echo(f"{what}: {reg.model_uri} (digest {reg.digest}, {len(reg.metrics)} metrics, "
               f"{reg.reference_records} reference embeddings)")
    if reg.created and alias:
        typer.echo(f"alias: models:/{reg.name}@{alias}")
    typer.echo(f"model card: {reg.card_path}")


@domain_errors
def promote_cmd(
    name: str = typer.Option(None, help="registered model name (default: esi)"),
    version: int = typer.Option(None, min=1, help="version to promote (default: the one --alias points at)"),
    alias: str = typer.Option("candidate", help="promote the version this alias points at"),
    to: str = typer.Option("champion", help="alias to move when every gate holds"),
    require: list[str] = typer.Option(None, "--require", help="gate METRIC>=VALUE (also > <= < ==); repeatable; "
                                      "replaces the default gates (ESI_PROMOTION_GATES)"),
    no_gates: bool = typer.Option(False, "--no-gates", help="no metric gates (only --compare, if given)"),
    compare: str = typer.Option(None, help="ALIAS[:METRIC,...]: not worse than that alias's version"),
    as_json: bool = typer.Option(False, "--json", help="print the outcome as JSON"),
) -> None:
    """Move an alias (champion) to a version only when every gate holds; exit 1 and list the failing gates
    otherwise. The outcome is recorded on the version (validation_status, gate.* tags)."""
    setup_logging()
    from esi.registry import promote

    gates = [] if no_gates else (list(require) if require else None)
    pr = promote(_name(name), version=version, alias=None if version else alias, to=to, require=gates,
                 compare=compare)
    if as_json:
        typer.echo(json.dumps({"name": pr.name, "version": pr.version, "to": pr.to, "passed": pr.passed,
                               "previous": pr.previous, "gates": pr.gates, "notes": pr.notes}, indent=2))
    else:
        for g in pr.gates:
            mark = typer.style("pass", fg=typer.colors.GREEN) if g["passed"] else typer.style(
                "FAIL", fg=typer.colors.RED)
            gate = g["metric"] if g["threshold"] is None else f"{g['metric']} {g['op']} {g['threshold']}"
            typer.echo(f"  [{mark}] {gate}: {g['reason']}")
        for note in pr.notes:
            typer.echo(f"  note: {note}")
        typer.echo(pr.summary() if not pr.passed else
                   f"promoted: models:/{pr.name}@{pr.to} -> v{pr.version}"
                   + (f" (was v{pr.previous})" if pr.previous and pr.previous != pr.version else ""))
    if not pr.passed:
        raise typer.Exit(1)


@models_app.command("list")
@domain_errors
def list_cmd(name: str = typer.Option(None, help="only this registered model (default: all)"),
             as_json: bool = typer.Option(False, "--json", help="JSON for scripts")) -> None:
    """Versions with aliases, validation status, key metrics, creation time and digest."""
    from esi.registry import list_versions
    from esi.registry.listing import key_metrics
    from esi.settings import get_settings

    rows = list_versions(name)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no registered models" + (f" named {name!r}" if name else "")
                   + "; register a run with 'esi register --run RUN_DIR'")
        return
    from rich.console import Console
    from rich.table import Table

    columns = key_metrics(rows, get_settings().promotion_gates)
    console = Console()
    console = Console(width=max(console.width, 160))  # a pipe gets 80 columns: too narrow for the metrics
    table = Table(title="registered models")
    for col in ("model", "version", "aliases", "status", *[c.split(".", 2)[-1] for c in columns], "created",
                "digest"):
        table.add_column(col)
    for r in rows:
        status = r["validation_status"] + (f" (@{r['validation_target']})" if r.get("validation_target") else "")
        values = [f"{r['metrics'][c]:.4f}" if c in r["metrics"] else "-" for c in columns]
        table.add_row(r["name"], str(r["version"]), ", ".join(r["aliases"]) or "-", status, *values,
                      r["created"] or "-", (r["digest"] or "-")[:12])
    console.print(table)
    if columns:
        typer.echo("metrics: " + ", ".join(columns))


@models_app.command("show")
@domain_errors
def show_cmd(ref: str = typer.Argument("esi@champion", help="NAME@ALIAS, NAME/VERSION or models:/ URI"),
             as_json: bool = typer.Option(False, "--json", help="the version summary as JSON, no card")) -> None:
    """Print a version's model card (and a summary line)."""
    from esi.registry import model_card

    info, card = model_card(ref)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{info['name']} v{info['version']} aliases: {', '.join(info['aliases']) or '-'}; validation: "
               f"{info['validation_status'] or 'not validated'}; digest {info['digest']}\n")
    typer.echo(card)


def register(app: typer.Typer) -> None:
    app.command("register")(register_cmd)
    app.command("promote")(promote_cmd)
    app.add_typer(models_app, name="models")
