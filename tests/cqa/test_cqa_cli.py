"""``esi cqa harmonize`` and ``esi cqa conditions`` through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from esi.cli import app
from esi.conditions.mimic_rules import coverage
from esi.conditions.vocabulary import load_vocabulary

MIMIC_DEV = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "mimic_statements"
MIMIC_DEV = MIMIC_DEV / "statements_dev.txt"
runner = CliRunner()

STATEMENTS = """Sinus rhythm with borderline 1st degree A-V block

Probable left ventricular hypertrophy
*** technically unsatisfactory tracing ***
Quantum flux capacitor misaligned
"""


def test_harmonize_text_output(tmp_path: Path) -> None:
    path = tmp_path / "statements.txt"
    path.write_text(STATEMENTS)
    result = runner.invoke(app, ["cqa", "harmonize", "--mimic-statements", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "first degree AV block [270492004] 0.50" in out
    assert "sinus rhythm [426783006] 1.00" in out
    assert "left ventricular hypertrophy [164873001] 0.70" in out
    assert "non-diagnostic: technical_quality" in out
    assert "Quantum flux capacitor misaligned\n    -> UNMAPPED" in out
    assert "coverage of 4 statements: mapped 2 (50.0%), non-diagnostic 1 (25.0%), unmapped 1 (25.0%)" in out
    assert out.rstrip().endswith("unmapped statements:\n  Quantum flux capacitor misaligned")


def test_harmonize_json_on_real_statements() -> None:
    result = runner.invoke(app, ["cqa", "harmonize", "--mimic-statements", str(MIMIC_DEV), "--json"])
    assert result.exit_code == 0, result.output[-2000:]
    data = json.loads(result.output)
    statements = [s for s in MIMIC_DEV.read_text().splitlines() if s.strip()]
    assert len(data["statements"]) == len(statements) == 1931
    cov = coverage(statements)
    assert data["coverage"]["mapped"] == len(cov.mapped)
    assert data["coverage"]["non_diagnostic"] == len(cov.non_diagnostic)
    assert data["coverage"]["unmapped_statements"] == cov.unmapped
    first_mapped = next(r for r in data["statements"] if r["status"] == "mapped")
    assert {"id", "name", "certainty"} <= set(first_mapped["conditions"][0])
    assert {r["status"] for r in data["statements"]} <= {"mapped", "non_diagnostic", "unmapped"}


def test_harmonize_missing_or_empty_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["cqa", "harmonize", "--mimic-statements", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2
    assert "statements file not found" in result.output and "nope.txt" in result.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    result = runner.invoke(app, ["cqa", "harmonize", "--mimic-statements", str(empty)])
    assert result.exit_code == 2 and "no statements" in result.output


def test_conditions_listing() -> None:
    result = runner.invoke(app, ["cqa", "conditions"])
    assert result.exit_code == 0
    assert f"{len(load_vocabulary())} conditions" in result.output
    assert "164889003" in result.output and "atrial fibrillation" in result.output
    result = runner.invoke(app, ["cqa", "conditions", "--category", "conduction", "--json"])
    rows = json.loads(result.output)
    assert rows and all(r["category"] == "conduction" for r in rows)
    assert any(r["id"] == "59118001" for r in rows)
    result = runner.invoke(app, ["cqa", "conditions", "--category", "arrhythmia"])
    assert result.exit_code == 2 and "arrhythmia" in result.output
