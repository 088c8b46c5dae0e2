"""Helpers shared by the command modules."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])
NOISY_LOGGERS = ("great_expectations", "mlflow", "alembic", "chromadb", "httpx", "httpcore", "urllib3",
                 "openai", "langchain", "sentence_transformers", "transformers", "numexpr", "matplotlib")


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO (DEBUG with verbose); rich output goes to stdout."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # Libraries that log their internals at INFO would bury the pipeline's own progress lines.
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def domain_errors(fn: F) -> F:
    """Turn an EsiError into 'error: <message>' on stderr and exit code 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from esi.errors import EsiError

        try:
            return fn(*args, **kwargs)
        except EsiError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from exc

    return wrapper  # type: ignore[return-value]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse '--shard i/n' (0-based i) into (i, n)."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise typer.BadParameter(f"--shard {text!r}: need 0 <= i < n")
    return i, n
