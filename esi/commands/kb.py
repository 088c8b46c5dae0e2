"""``esi kb build | query``: the ECG knowledge base (Chroma, through LangChain)."""

from __future__ import annotations

from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging

kb_app = typer.Typer(help="ECG knowledge base: build it from the project corpus and your documents, "
                     "query it.", no_args_is_help=True)
KB_DIR_HELP = "knowledge-base folder (default $ESI_HOME/kb)"
EMB_HELP = "local | openai (default ESI_EMBEDDINGS)"


@kb_app.command("build")
@domain_errors
def build(docs: list[Path] = typer.Option(None, "--docs", help="extra documents or folders (markdown, text, "
                                          "PDF); remembered for later builds"),
          kb_dir: Path = typer.Option(None, "--kb-dir", help=KB_DIR_HELP),
          embeddings: str = typer.Option(None, "--embeddings", help=EMB_HELP),
          no_corpus: bool = typer.Option(False, "--no-corpus", help="leave out the project's corpus"),
          rebuild: bool = typer.Option(False, "--rebuild", help="drop the collection first (e.g. to switch "
                                       "embedding model)"),
          quiet: bool = typer.Option(False, "--quiet", help="no progress bar")) -> None:
    """Build or update the knowledge base (incremental: unchanged chunks are not embedded again)."""
    setup_logging()
    from esi.cqa.embeddings import get_embeddings
    from esi.cqa.knowledge_base import build_knowledge_base

    s = build_knowledge_base(kb_dir, docs or (), include_corpus=not no_corpus,
                             embeddings=get_embeddings(embeddings), progress=not quiet, rebuild=rebuild)
    typer.echo(f"knowledge base {s.kb_dir}: {s.documents} documents, {s.chunks} chunks "
               f"({s.added} embedded, {s.removed} removed, {s.unchanged} unchanged) in {s.seconds:.1f} s")
    typer.echo(f"  embeddings: {s.embedding_id}; version: {s.kb_version}")
    if s.user_sources:
        typer.echo(f"  your documents: {', '.join(s.user_sources)}")


@kb_app.command("query")
@domain_errors
def query(text: str = typer.Argument(..., help="what to look for, e.g. 'right bundle branch block'"),
          k: int = typer.Option(5, "-k", "--top", min=1, help="number of passages"),
          condition: str = typer.Option(None, "--condition", help="only passages of this condition id"),
          kb_dir: Path = typer.Option(None, "--kb-dir", help=KB_DIR_HELP),
          embeddings: str = typer.Option(None, "--embeddings", help=EMB_HELP),
          json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Print the passages most similar to TEXT, with their cosine similarity."""
    import json
    from dataclasses import asdict

    from esi.cqa.embeddings import get_embeddings
    from esi.cqa.knowledge_base import open_knowledge_base

    kb = open_knowledge_base(kb_dir, get_embeddings(embeddings))
    passages = kb.query(text, k=k, condition_id=condition)
    if json_out:
        typer.echo(json.dumps([asdict(p) for p in passages], indent=2))
        return
    if not passages:
        typer.echo("no passages found")
    for i, p in enumerate(passages, start=1):
        conds = ", ".join(p.condition_ids) or "-"
        typer.echo(f"[{i}] score {p.score:.3f}  {p.title} - {p.section}  ({p.source}; conditions: {conds})")
        for line in p.text.strip().splitlines():
            typer.echo(f"    {line}")


def register(app: typer.Typer) -> None:
    app.add_typer(kb_app, name="kb")
