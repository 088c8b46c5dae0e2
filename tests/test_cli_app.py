"""The ``esi`` command: every group registers, and ``esi --help`` imports no heavy library."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

HEAVY = ("torch", "pandas", "transformers", "chromadb", "mlflow", "great_expectations", "sklearn", "scipy",
         "langchain_core", "bentoml", "kfp", "wfdb", "pydantic_settings")


def test_help_imports_nothing_heavy() -> None:
    code = f"import sys, esi.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = res.stdout.strip()
    assert out == "", f"'esi --help' imports {out}: import them inside the command functions"


def test_every_stage_has_a_command() -> None:
    from esi.cli import app

    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for command in ("data", "validate", "cqa", "kb", "caption", "pretrain", "evaluate", "run"):
        assert command in res.output, f"'esi {command}' is missing"


def test_run_rejects_unknown_stage() -> None:
    from esi.cli import app

    res = CliRunner().invoke(app, ["run", "--stages", "synth,teleport", "--quiet"])
    assert res.exit_code == 2 and "teleport" in res.output
