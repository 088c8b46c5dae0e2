"""`esi validate STORE --report DIR [--strict] [--thresholds FILE]`: summary, exit codes, message."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from esi.cli import app


def test_failing_store_exits_1_and_names_the_failures(make_store, storekit, tmp_path: Path) -> None:
    rows = storekit.rows(20)
    rows[3]["record_id"] = rows[2]["record_id"]
    store = make_store("bad", rows=rows, header={"fs": 360})
    result = CliRunner().invoke(app, ["validate", str(store), "--report", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "FAILED" in out and "header_fs_expected" in out and "record_id_unique" in out
    assert "ptbxl/00003" in out  # a failing record id
    assert (tmp_path / "r" / "report.html").exists() and (tmp_path / "r" / "gx_results.json").exists()


def test_clean_store_exits_0_and_thresholds_apply(make_store, tmp_path: Path) -> None:
    store = make_store("clean")
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(store), "--report", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and "validation passed: 20 records" in result.output
    # a per-dataset override that expects 250 Hz turns the same store into a failure
    override = tmp_path / "t.json"
    override.write_text(json.dumps({"expected": {"fs": 250}}))
    result = runner.invoke(app, ["validate", str(store), "--report", str(tmp_path / "r2"), "--quiet",
                                 "--thresholds", str(override)])
    assert result.exit_code == 1 and "header_fs_expected" in result.output


def test_bad_thresholds_file_is_a_domain_error(make_store, tmp_path: Path) -> None:
    store = make_store("clean")
    override = tmp_path / "t.json"
    override.write_text(json.dumps({"expectd": {"fs": 250}}))
    result = CliRunner().invoke(app, ["validate", str(store), "--report", str(tmp_path / "r"), "--thresholds",
                                      str(override)])
    assert result.exit_code == 2 and "expectd" in result.output
