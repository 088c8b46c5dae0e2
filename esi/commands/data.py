"""``esi data synth | prepare | info | compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, parse_shard, setup_logging

data_app = typer.Typer(help="ECG data: synthetic generator, preparation into a store, store info.",
                       no_args_is_help=True)


@data_app.command("synth")
@domain_errors
def synth(out: Path = typer.Option(..., help="folder to write (PTB-XL layout)"),
          subjects: int = typer.Option(200, min=1, help="number of synthetic subjects"),
          records_per_subject: int = typer.Option(5, min=1, help="records per subject"),
          seed: int = typer.Option(0, help="random seed (same seed, same files)"),
          workers: int = typer.Option(0, min=0, help="worker processes"),
          write_lr: bool = typer.Option(False, "--write-lr", help="also write 100 Hz records100/"),
          realism: str = typer.Option("v2", help="generator calibration: v2 (matched to real recordings) | v3 "
                                      "(v2, electrodes and noise varying between a subject's sessions) | v2e (v2, AF, "
                                      "bundle branch blocks and 1AVB 3x as common) | v1"),
          quiet: bool = typer.Option(False, "--quiet", help="no progress bar")) -> None:
    """Generate a synthetic 12-lead dataset in PTB-XL layout (database CSV + WFDB records500)."""
    setup_logging()
    from esi.data.synthetic import generate_dataset

    summary = generate_dataset(out, subjects=subjects, records_per_subject=records_per_subject, seed=seed,
                               workers=workers, write_lr=write_lr, progress=not quiet, realism=realism)
    typer.echo(f"wrote {summary['records']} records of {summary['subjects']} subjects to {summary['path']}")


@data_app.command("prepare")
@domain_errors
def prepare_cmd(source: str = typer.Option(..., help="ptbxl | challenge | icbeb | mimic | wfdb"),
                root: Path = typer.Option(..., help="dataset folder"),
                out: Path = typer.Option(..., help="store folder to create"),
                fs: int = typer.Option(500, help="target sampling rate (Hz)"),
                duration: float = typer.Option(10.0, help="window length (s)"),
                window: str = typer.Option("first", help="first | center | all windows of longer records"),
                highpass: float = typer.Option(0.5, help="baseline-wander high-pass (Hz); 0 to skip"),
                lowpass: float = typer.Option(100.0, help="low-pass (Hz); 0 to skip"),
                rate: str = typer.Option("auto", help="sampling rate: auto (each header's) or HZ to force it "
                                         "(PTB-XL: 500 or 100, which also picks records500/ or records100/)"),
                shard_size: int = typer.Option(1000, min=1, help="records per shard"),
                workers: int = typer.Option(-1, help="worker processes (-1: ESI_NUM_WORKERS)"),
                shard: str = typer.Option(None, help="process only shards k with k %% n == i, as i/n"),
                limit: int = typer.Option(None, min=1, help="only the first N records"),
                overwrite: bool = typer.Option(False, "--overwrite", help="delete and rebuild the ESI store at "
                                               "--out (never a folder that is not an ESI store)"),
                resume: bool = typer.Option(False, "--resume", help="continue or repair the store at --out "
                                            "(re-running the same command resumes too)"),
                wait: float = typer.Option(0.0, "--wait", min=0, help="seconds to wait while another command "
                                           "writes --out (default: stop at once)"),
                quiet: bool = typer.Option(False, "--quiet", help="no progress bar")) -> None:
    """Convert a dataset into a store (resumable: finished shards are skipped when re-run)."""
    setup_logging()
    from esi.data.prepare import prepare
    from esi.data.preprocess import PreprocessConfig
    from esi.settings import get_settings

    config = PreprocessConfig(fs=fs, duration_s=duration, window=window, highpass_hz=highpass or None,
                              lowpass_hz=lowpass or None)
    n_workers = get_settings().num_workers if workers < 0 else workers
    s = prepare(source, root, out, config=config, shard_size=shard_size, workers=n_workers,
                shard=parse_shard(shard), limit=limit, overwrite=overwrite, resume=resume, progress=not quiet,
                reader_options={"rate": rate}, lock_timeout=wait)
    typer.echo(f"records found: {s.records_seen} ({s.records_per_s:.1f}/s), "
               f"shards done now: {s.shards_done_now}, skipped (already done): {s.shards_skipped}, "
               f"of {s.shards_total}")
    if s.complete:
        typer.echo(f"store complete: {s.windows_written} windows, {s.rejected} rejected -> {out}")
        if s.rejected:
            typer.echo(f"  rejects: {out / 'rejects.parquet'} (see 'esi data info {out}')")
    else:
        typer.echo("store not complete yet: run the remaining --shard tasks (or run without --shard) "
                   "to finish it")
    if s.unmapped_labels:
        top = ", ".join(f"{k!r} x{v}" for k, v in list(s.unmapped_labels.items())[:5])
        typer.echo(f"  labels not in the vocabulary (kept as raw labels): {len(s.unmapped_labels)}: {top}")


@data_app.command("info")
@domain_errors
def info(store: Path = typer.Argument(..., help="store folder"),
         json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Counts, sources, folds, label and condition distribution, rejects and quarantine of a store."""
    import json

    from esi.data.summary import summarize_store

    summary = summarize_store(store)
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from esi.data.summary import render_summary

    render_summary(summary)


@data_app.command("compare")
@domain_errors
def compare_cmd(synth_store: Path = typer.Argument(..., help="synthetic store folder"),
                real_store: Path = typer.Argument(..., help="real store folder"),
                out: Path = typer.Option(..., help="folder for report.md, compare.json and plots"),
                limit: int = typer.Option(None, min=1, help="measure at most N records per store (spread "
                                          "evenly)"),
                conditions: str = typer.Option("AF,RBBB,LBBB,1AVB,NORM", help="condition names or ids, "
                                               "comma-separated"),
                ludb: Path = typer.Option(None, help="LUDB folder (N.hea/N.dat/N.ii): check measure.py's "
                                          "intervals against its delineation"),
                plots: bool = typer.Option(True, "--plots/--no-plots", help="write the PNG plots"),
                quiet: bool = typer.Option(False, "--quiet", help="no progress bar")) -> None:
    """Compare synthetic and real recordings on the same measurements; rank the largest gaps."""
    setup_logging()
    from esi.data.compare import compare_stores

    result = compare_stores(synth_store, real_store, out, limit=limit, conditions=conditions, ludb=ludb,
                            progress=not quiet, plots=plots)
    if result["preprocessing"]["warning"]:
        typer.secho(f"warning: {result['preprocessing']['warning']}", err=True, fg=typer.colors.YELLOW)
    for g in result["gaps"][:5]:
        typer.echo(f"  gap {g['rank']}: {g['feature']} (W/IQR {g['w_norm']:.2f}, synthetic median "
                   f"{g['synthetic']['median']:.3g} vs real {g['real']['median']:.3g} {g['unit']})")
    typer.echo(f"report: {out / 'report.md'}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
