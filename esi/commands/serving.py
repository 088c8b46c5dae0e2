"""``esi bento build`` (the bento of a registered model) and ``esi score`` (batch scoring of an archive)."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging

bento_app = typer.Typer(help="BentoML: build the bento of a registered model (then 'bentoml serve esi:latest').",
                        no_args_is_help=True)


@bento_app.command("build")
@domain_errors
def bento_build_cmd(
    model: str = typer.Option("models:/esi@champion", help="MLflow model URI (models:/NAME@ALIAS, models:/NAME/V) "
                                                           "or a checkpoint file"),
    tracking_uri: str = typer.Option(None, help="MLflow tracking URI (default: settings)"),
) -> None:
    """Import the model into the BentoML store and build the bento esi:<model version>, offline."""
    setup_logging()
    from esi.serving.bentostore import bentoml_home
    from esi.serving.build import build_bento, serve_command

    tag = build_bento(model, tracking_uri=tracking_uri)
    home = bentoml_home()
    typer.echo(f"bento: {tag}")
    typer.echo(f"serve it: {serve_command(tag)}")
    typer.echo(f"image (needs a Docker engine): BENTOML_HOME={home} bentoml containerize {tag}")


def parse_score_shard(text: str) -> tuple[int, int]:
    """'--shard i/n' for esi score: 1-based (1/2 and 2/2 together are the whole input)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise typer.BadParameter(f"--shard {text!r}: need 1 <= i <= n (1-based)")
    return i, n


@domain_errors
def score_cmd(
    input: Path = typer.Option(..., "--input", help="a store, a folder of WFDB records, or a dataset root "
                                                    "(with --source)"),
    out: Path = typer.Option(..., help="output folder (Parquet parts, rejects.parquet, summary.json)"),
    model: str = typer.Option("models:/esi@champion", help="MLflow URI, checkpoint, or http://HOST:PORT of a "
                                                           "running service"),
    source: str = typer.Option(None, help="reader of a dataset root: ptbxl | challenge | icbeb | mimic | wfdb"),
    shard: str = typer.Option("1/1", help="i/n (1-based): score every n-th part, starting at part i-1"),
    labels: str = typer.Option("default", help="'default' (the condition vocabulary) or a .txt/.json label file"),
    batch_size: int = typer.Option(64, min=1, help="records per forward pass"),
    part_size: int = typer.Option(1024, min=1, help="records per Parquet part (the unit of resumption)"),
    top_k: int = typer.Option(5, min=1, help="conditions in top_conditions / top_names"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Score an archive: embeddings + one score per condition, resumable, with rejects and a drift summary."""
    setup_logging()
    from esi.serving.score import score

    summary = score(input, out, model=model, source=source, shard=parse_score_shard(shard), labels=labels,
                    batch_size=batch_size, progress=not quiet, part_size=part_size, top_k=top_k)
    drift = summary.drift
    drift_line = (f"MMD^2 {drift['mmd2']:.4g} (p = {drift['p_value']:.3g}), {drift['far_share']:.1%} far from the "
                  "reference" if drift.get("available") else f"not computed ({drift.get('reason')})")
    typer.echo(f"scored {summary.records} records ({summary.records_this_run} now, "
               f"{summary.records_per_s:.1f} records/s), {summary.rejects} rejects; parts "
               f"{summary.parts_done}/{summary.parts_total}{'' if summary.complete else ' (incomplete)'}")
    typer.echo(f"model {summary.model_name} version {summary.model_version}; drift: {drift_line}")
    typer.echo(f"scores: {out / 'scores'}  rejects: {out / 'rejects.parquet'}  summary: {out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    app.add_typer(bento_app, name="bento")
    app.command("score")(score_cmd)
