"""`--strict` semantics (quarantine limit 0, warnings critical) and an honest one-screen summary."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from esi.cli import app
from esi.validation import validate_store
from esi.validation.report import print_summary


def _one_bad_record(make_store, storekit):
    rows = storekit.rows(20)
    rows[4]["age"] = 300.0  # a critical record-level failure: 1 of 20 = 5 %, under the 10 % limit
    return make_store("one_bad", rows=rows), rows[4]["record_id"]


def _screen(report) -> str:
    console = Console(record=True, width=200)
    print_summary(report, console=console)
    return console.export_text()


def test_default_quarantines_and_the_summary_says_so(make_store, storekit, tmp_path: Path) -> None:
    store, rid = _one_bad_record(make_store, storekit)
    report = validate_store(store, tmp_path / "r", progress=False)
    assert report.passed and report.n_quarantined == 1 and not report.critical_failures
    screen = _screen(report)
    first = screen.splitlines()[0]
    # never a bare PASSED above a table of failed critical expectations
    assert first.startswith("PASSED with 1 record(s) quarantined by 1 critical expectation(s)"), screen
    row = next(line for line in screen.splitlines() if "age_in_range" in line)
    assert "critical" in row and "quarantined" in row
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Passed with 1 record(s) quarantined" in html and "age_in_range" in html


def test_strict_fails_on_any_critical_failure(make_store, storekit, tmp_path: Path) -> None:
    store, rid = _one_bad_record(make_store, storekit)
    report = validate_store(store, tmp_path / "r", progress=False, strict=True)
    assert not report.passed and report.max_quarantine_fraction == 0.0
    names = {f.expectation for f in report.critical_failures}
    assert {"quarantine_share_within_limit", "age_in_range"} <= names
    assert rid in next(f for f in report.critical_failures if f.expectation == "age_in_range").example_ids
    screen = _screen(report)
    assert screen.startswith("FAILED") and "failed the step" in screen and "strict" in screen.splitlines()[0]
    res = CliRunner().invoke(app, ["validate", str(store), "--report", str(tmp_path / "r2"), "--quiet",
                                   "--strict"])
    assert res.exit_code == 1 and "age_in_range" in res.output


def test_strict_counts_warnings_as_critical(make_store, storekit, tmp_path: Path) -> None:
    rows = storekit.rows(20)
    rows[2]["subject_id"] = None  # subject_present is a warning by default
    store = make_store("warn", rows=rows)
    lenient = validate_store(store, tmp_path / "a", progress=False)
    assert lenient.passed and "subject_present" in {w.expectation for w in lenient.warnings}
    strict = validate_store(store, tmp_path / "b", progress=False, strict=True)
    assert not strict.passed and "subject_present" in {f.expectation for f in strict.critical_failures}


def test_flagged_out_of_range_age_is_reported(make_store, storekit, tmp_path: Path) -> None:
    rows = storekit.rows(20)
    rows[6]["age"] = None
    rows[6]["flags"] = json.dumps(["age_out_of_range=300"])
    store = make_store("flagged", rows=rows)
    report = validate_store(store, tmp_path / "r", progress=False)
    assert report.passed  # a null age is allowed ...
    warned = next(w for w in report.warnings if w.expectation == "age_recorded_in_range")
    assert warned.example_ids == [rows[6]["record_id"]]  # ... but the source's 300 is still reported
    assert report.n_quarantined == 0
