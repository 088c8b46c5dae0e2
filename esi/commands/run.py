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
        freeze_ecg_stages: int = typer.Option(3, min=0, help="ECG encoder stages kept at their initial weights "
                                              "during pretraining (0: train all)"),
        stages: str = typer.Option(None, help="comma list of stages, or 'STAGE-' for STAGE onwards "
                                   "(synth,prepare,validate,kb,caption,pretrain,evaluate,register,promote,"
                                   "bento,score)"),
        seed: int = typer.Option(0, help="seed of the generator and of training"),
        workers: int = typer.Option(0, min=0, help="worker processes for generation and preparation"),
        gate: bool = typer.Option(True, "--gate/--no-gate", help="stop when validation fails"),
        model_name: str = typer.Option(None, "--name", help="registered model name (default: settings)"),
        require: list[str] = typer.Option(None, "--require", help="promotion gate METRIC>=VALUE "
                                          "(repeatable; default: the settings' promotion gates)"),
        score_input: Path = typer.Option(None, help="WFDB folder scored at the end (default: the real "
                                         "sample records shipped in tests/fixtures/real)"),
        real: bool = typer.Option(True, "--real/--no-real", help="prepare, caption and evaluate on the shipped "
                                  "real-ECG benchmark (tests/fixtures/real_benchmark)"),
        mix_real: bool = typer.Option(False, "--mix-real/--no-mix-real", help="pretrain on the real benchmark's "
                                      "pretraining part too (its evaluation part never is) [off]"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars")) -> None:
    """Run synth -> prepare -> validate -> kb -> caption -> pretrain -> evaluate -> register -> promote -> bento ->
    score, and print where results are.

    Re-running resumes: finished work is skipped.
    """
    setup_logging()
    from esi.pipeline.local import RunConfig, parse_stages, run_local

    cfg = RunConfig(out=out, subjects=subjects, records_per_subject=records_per_subject, epochs=epochs,
                    model=model, freeze_ecg_stages=freeze_ecg_stages, stages=parse_stages(stages), seed=seed,
                    workers=workers, gate=gate,
                    model_name=model_name, gates=tuple(require) if require else None, score_input=score_input,
                    real_benchmark=real, mix_real=mix_real)

    def report(stage: str, seconds: float, notes: dict) -> None:
        short = {k: v for k, v in notes.items() if not isinstance(v, (dict, list))}
        typer.secho(f"[{stage}] done in {seconds:.1f} s {short}", fg=typer.colors.GREEN)

    result = run_local(cfg, progress=not quiet, on_stage=report)
    typer.echo("\nResults:")
    for what, where in result.outputs.items():
        typer.echo(f"  {what:<36} {where}")
    typer.echo(f"  {'total time (s)':<36} {sum(result.seconds.values()):.1f}")
    _print_headline(result.notes.get("evaluate") or {})
    if "bento" in result.notes:
        typer.echo(f"\nServe it:  {result.outputs['serve it']}   (then POST {{\"ecg\": [...], \"fs\": 500}} to "
                   "/zero_shot)")


def _print_headline(notes: dict) -> None:
    """Synthetic and real-ECG figures side by side (the real ones are what users will see on their data)."""
    synth, real = notes.get("metrics") or {}, notes.get("real") or {}
    if not synth and not real:
        return
    typer.echo("\nHeadline (mean one-vs-rest AUC):")
    if "zero_shot_macro_auc" in synth:
        typer.echo(f"  synthetic test folds, zero-shot            {synth['zero_shot_macro_auc']:.3f}")
    if "zero_shot_macro_auc" in real:
        ci = (real.get("zero_shot_macro_auc_ci_low"), real.get("zero_shot_macro_auc_ci_high"))
        span = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if None not in ci else ""
        typer.echo(f"  real ECGs (AF, RBBB, LBBB, 1AVB), zero-shot {real['zero_shot_macro_auc']:.3f}{span}")
    for key, label in (("linear_probe_macro_auc", "linear probe (5-fold CV)"),
                       ("linear_probe_random_init_macro_auc", "random-init linear probe")):
        if key in real:
            typer.echo(f"  real ECGs, {label:<32}{real[key]:.3f}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
