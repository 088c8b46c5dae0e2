"""The ``esi`` command. Each module in ``esi/commands`` adds its commands through ``register(app)``.

Command modules import heavy libraries inside the command functions so ``esi --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import esi.commands

app = typer.Typer(name="esi", help="ECG Semantic Integrator: data, validation, captions, pretraining, "
                  "evaluation, registry and serving of an ECG-text foundation model.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(esi.commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"esi.commands.{info.name}")
        module.register(app)


_register_all()


def main() -> None:
    """Entry point that turns domain errors into a one-line message and exit code 2."""
    from esi.errors import EsiError

    try:
        app(standalone_mode=True)
    except EsiError as exc:  # pragma: no cover - typer re-raises only outside standalone mode
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
