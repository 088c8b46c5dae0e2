"""``esi caption STORE --out CAPTIONS``: per record, demographics + conditions + waveform description."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging


@domain_errors
def caption(store: Path = typer.Argument(..., help="store folder (from 'esi data prepare')"),
            out: Path = typer.Option(..., "--out", help="captions parquet to write"),
            plain: bool = typer.Option(False, "--plain", help="demographics + label names only (no knowledge "
                                       "base, no LLM): the paper's 'without CQA' ablation"),
            backend: str = typer.Option(None, "--backend", help="offline | openai (default ESI_LLM)"),
            kb_dir: Path = typer.Option(None, "--kb-dir", help="knowledge base (default $ESI_HOME/kb)"),
            cache: Path = typer.Option(None, "--cache", help="description cache (default "
                                       "$ESI_HOME/caption_cache.sqlite)"),
            limit: int = typer.Option(None, "--limit", min=1, help="only the first N records"),
            quiet: bool = typer.Option(False, "--quiet", help="no progress bar")) -> None:
    """Write a caption for every record of STORE; waveform descriptions are cached per condition signature."""
    setup_logging()
    from esi.cqa.captions import caption_store
    from esi.data.lock import exclusive_lock
    from esi.data.store import open_store

    if backend not in (None, "offline", "openai"):
        raise typer.BadParameter(f"--backend {backend!r}: use offline or openai")
    open_store(store).require_records("captions")  # an empty or broken store: say so before loading models
    with exclusive_lock(out, "esi caption"):
        s = caption_store(store, out, kb_dir=kb_dir, backend=backend, plain=plain, cache_path=cache,
                          progress=not quiet, limit=limit)
    typer.echo(f"records: {s.records}, distinct signatures: {s.signatures}, LLM calls: {s.llm_calls}, "
               f"cache hits: {s.cache_hits}, tokens: {s.tokens}, flagged: {s.flagged}")
    typer.echo(f"  without conditions: {s.no_conditions}, unmapped statements kept as text: "
               f"{s.unmapped_statements}; generator: {s.generator or 'plain'}"
               + (f", kb version: {s.kb_version}" if s.kb_version else ""))
    typer.echo(f"wrote {out} in {s.seconds:.1f} s ({s.records_per_s:.0f} records/s)")


def register(app: typer.Typer) -> None:
    app.command("caption")(caption)
