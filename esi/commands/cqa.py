"""``esi cqa harmonize | conditions``: the condition vocabulary and label harmonisation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from esi.commands._common import domain_errors, setup_logging

cqa_app = typer.Typer(help="Cardio Query Assistant: condition vocabulary and label harmonisation.",
                      no_args_is_help=True)


def _read_statements(path: Path) -> list[str]:
    from esi.errors import DataError, DatasetNotFoundError

    if not path.exists():
        raise DatasetNotFoundError(f"statements file not found: {path}; fix: pass a text file with one MIMIC "
                                   "report statement per line")
    if not path.is_file():
        raise DataError("not a file", path=str(path), fix="pass a text file with one statement per line")
    statements = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    statements = [s for s in statements if s]
    if not statements:
        raise DataError("no statements in file", path=str(path), fix="write one report statement per line")
    return statements


@cqa_app.command("harmonize")
@domain_errors
def harmonize_cmd(mimic_statements: Path = typer.Option(
                      ..., "--mimic-statements", help="text file, one MIMIC report statement per line"),
                  json_out: bool = typer.Option(False, "--json", help="print JSON (statements + coverage)"),
                  verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    """Map each statement to conditions with certainty (or a non-diagnostic class); print the coverage."""
    setup_logging(verbose)
    from esi.conditions.mimic_rules import coverage, map_statement
    from esi.conditions.vocabulary import load_vocabulary

    vocab = load_vocabulary()
    statements = _read_statements(mimic_statements)
    cov = coverage(statements)
    if json_out:
        rows = []
        for s in statements:
            m = map_statement(s)
            rows.append({"statement": s, "status": m.status,
                         "conditions": [{"id": cid, "name": vocab.name(cid), "certainty": round(c, 3)}
                                        for cid, c in m.conditions.items()],
                         "non_diagnostic": m.non_diagnostic, "qualifier": m.qualifier,
                         "negated": list(m.negated)})
        typer.echo(json.dumps({"statements": rows, "coverage": cov.to_dict()}, indent=2))
        return
    for s in statements:
        m = map_statement(s)
        if m.conditions:
            found = ", ".join(f"{vocab.name(cid)} [{cid}] {c:.2f}" for cid, c in m.conditions.items())
            extra = f"  (also {m.non_diagnostic})" if m.non_diagnostic else ""
            typer.echo(f"{s}\n    -> {found}{extra}")
        elif m.non_diagnostic:
            typer.echo(f"{s}\n    -> non-diagnostic: {m.non_diagnostic}")
        else:
            typer.echo(f"{s}\n    -> UNMAPPED")
    typer.echo("")
    typer.echo(f"coverage of {cov.total} statements: mapped {len(cov.mapped)} ({cov.mapped_share:.1%}), "
               f"non-diagnostic {len(cov.non_diagnostic)} ({cov.non_diagnostic_share:.1%}), "
               f"unmapped {len(cov.unmapped)} ({cov.unmapped_share:.1%})")
    if cov.by_class:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(cov.by_class.items()))
        typer.echo(f"non-diagnostic classes: {classes}")
    if cov.unmapped:
        typer.echo("unmapped statements:")
        for s in cov.unmapped:
            typer.echo(f"  {s}")


@cqa_app.command("conditions")
@domain_errors
def conditions_cmd(category: str = typer.Option(None, help="only this category: rhythm | conduction | "
                                                           "morphology | ischaemia | other"),
                   json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the condition vocabulary (id, abbreviation, category, name)."""
    from esi.conditions.vocabulary import CATEGORIES, load_vocabulary
    from esi.errors import ConfigError

    if category is not None and category not in CATEGORIES:
        raise ConfigError(f"--category {category!r} is not one of {', '.join(CATEGORIES)}")
    conds = [c for c in load_vocabulary() if category is None or c.category == category]
    if json_out:
        typer.echo(json.dumps([{"id": c.condition_id, "name": c.name, "abbreviation": c.abbreviation,
                                "category": c.category, "snomed": c.snomed, "synonyms": list(c.synonyms)}
                               for c in conds], indent=2))
        return
    for c in conds:
        typer.echo(f"{c.condition_id:<40} {c.abbreviation:<10} {c.category:<11} {c.name}")
    typer.echo(f"{len(conds)} conditions")


def register(app: typer.Typer) -> None:
    app.add_typer(cqa_app, name="cqa")
