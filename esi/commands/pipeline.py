"""``esi pipeline run --local | compile | submit | schedule``: the Kubeflow pipelines of ESI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from esi.commands._common import domain_errors, setup_logging

pipeline_app = typer.Typer(help="Kubeflow pipelines: run locally (kfp.local), compile, submit, schedule.",
                           no_args_is_help=True)


def _params(items: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs; values are JSON when they parse (numbers, true/false), else strings."""
    from esi.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE, e.g. epochs=5")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@pipeline_app.command("run")
@domain_errors
def run_cmd(local: bool = typer.Option(False, "--local", help="run through kfp.local on this machine"),
            out: Path = typer.Option(Path(".esi/pipeline"), help="work root: every output of the run"),
            subjects: int = typer.Option(None, min=2, help="synthetic subjects [120]"),
            records_per_subject: int = typer.Option(None, min=2, help="records per subject [5]"),
            epochs: int = typer.Option(None, min=1, help="pretraining epochs [3]"),
            model: str = typer.Option(None, help="model config [esi_cpu]"),
            serve: bool = typer.Option(True, "--serve/--no-serve", help="register, promote, bento and score"),
            real: bool = typer.Option(None, "--real/--no-real", help="prepare, caption and evaluate on the shipped "
                                      "real-ECG benchmark [on] (real_benchmark)"),
            mix_real: bool = typer.Option(None, "--mix-real/--no-mix-real", help="pretrain on the real benchmark's "
                                          "pretraining part too [off] (mix_real)"),
            param: list[str] = typer.Option(None, "--param", "-p", help="any pipeline parameter, KEY=VALUE"),
            pipeline: str = typer.Option("esi_full", help="esi_full | batch_scoring")) -> None:
    """Run a pipeline end to end on the embedded defaults and print each step's time and where results are."""
    from esi.errors import ConfigError

    if not local:
        raise ConfigError("esi pipeline run needs --local (kfp.local on this machine); for a cluster use "
                          "'esi pipeline submit --endpoint URL'")
    setup_logging()
    from esi.pipeline.kfp_local import run_pipeline_locally

    args: dict[str, Any] = {k: v for k, v in {"subjects": subjects, "records_per_subject": records_per_subject,
                                              "epochs": epochs, "model_config": model}.items() if v is not None}
    if pipeline == "esi_full":
        args["serve"] = serve
        args.update({k: v for k, v in (("real_benchmark", real), ("mix_real", mix_real)) if v is not None})
    args.update(_params(param))
    run = run_pipeline_locally(out, args, pipeline=pipeline)
    typer.echo("\nSteps (wall time, s; ParallelFor iterations summed):")
    for step, seconds in run.steps.items():
        typer.echo(f"  {step:<28} {seconds:8.1f}")
    typer.echo(f"  {'total (incl. kfp.local overhead)':<28} {run.total_s:8.1f}")
    typer.echo("\nResults:")
    for what, where in run.outputs.items():
        typer.echo(f"  {what:<36} {where}")
    typer.echo(f"  {'step artifacts':<36} {run.pipeline_root}")
    from esi.commands.run import _print_headline

    _print_headline(run.headline)  # the same block as esi run: synthetic next to real-ECG figures
    if "bento" in run.outputs:
        from esi.settings import get_settings

        name = run.outputs["bento"].split(":")[0]
        home = os.environ.get("BENTOML_HOME") or get_settings().bentoml_dir.resolve()
        typer.echo(f"\nServe it:  BENTOML_HOME={home} bentoml serve {name}:latest   (BentoML's store of this run)")


@pipeline_app.command("compile")
@domain_errors
def compile_cmd(out_dir: Path = typer.Option(None, help="folder for the YAML [pipelines/]")) -> None:
    """Compile pipelines/esi_full.py and batch_scoring.py to YAML (the image comes from ESI_IMAGE)."""
    from esi.pipeline.kfp_local import compile_pipelines

    for path in compile_pipelines(out_dir):
        typer.echo(f"wrote {path}")


@pipeline_app.command("submit")
@domain_errors
def submit_cmd(endpoint: str = typer.Option(..., help="KFP API endpoint, e.g. http://localhost:8888"),
               package: Path = typer.Option(Path("pipelines/esi_full.yaml"), help="compiled pipeline"),
               experiment: str = typer.Option("esi", help="KFP experiment"),
               run_name: str = typer.Option(None, help="run name [package name + time]"),
               namespace: str = typer.Option(None, help="Kubeflow profile namespace (multi-user installs)"),
               param: list[str] = typer.Option(None, "--param", "-p", help="pipeline parameter KEY=VALUE")) -> None:
    """Submit a compiled pipeline as a run (like: kfp --endpoint URL run create -e EXP -r NAME -f FILE k=v)."""
    from esi.pipeline.kfp_remote import check_package, connect, submit

    check_package(package)
    r = submit(connect(endpoint, namespace), package, experiment=experiment, run_name=run_name,
               params=_params(param), namespace=namespace)
    typer.echo(f"submitted run {r['run_id']} ({r['run_name']}) in experiment {experiment}: {endpoint}/#/runs/details/"
               f"{r['run_id']}")


@pipeline_app.command("schedule")
@domain_errors
def schedule_cmd(endpoint: str = typer.Option(..., help="KFP API endpoint"),
                 cron: str = typer.Option("0 0 2 * * *", help="6-field cron, seconds first (KFP)"),
                 package: Path = typer.Option(Path("pipelines/batch_scoring.yaml"), help="compiled pipeline"),
                 experiment: str = typer.Option("esi-batch", help="KFP experiment"),
                 job_name: str = typer.Option("esi-batch-scoring", help="recurring run name"),
                 namespace: str = typer.Option(None, help="Kubeflow profile namespace"),
                 param: list[str] = typer.Option(None, "--param", "-p", help="pipeline parameter KEY=VALUE")) -> None:
    """Create a recurring run (batch scoring by default): one at a time, no catch-up of missed runs."""
    from esi.pipeline.kfp_remote import check_cron, check_package, connect, schedule

    check_cron(cron)
    check_package(package)
    r = schedule(connect(endpoint, namespace), package, cron=cron, experiment=experiment, job_name=job_name,
                 params=_params(param), namespace=namespace)
    typer.echo(f"scheduled {job_name} ({r['recurring_run_id']}) at '{cron}' in experiment {experiment}")


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
