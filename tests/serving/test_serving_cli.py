"""The commands: ``esi bento build`` and ``esi score`` are registered, with 1-based shards."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from esi.cli import app
from esi.commands.serving import parse_score_shard


def test_commands_are_registered() -> None:
    runner = CliRunner()
    assert "score" in runner.invoke(app, ["--help"]).output
    res = runner.invoke(app, ["bento", "build", "--help"])
    assert res.exit_code == 0 and "models:/esi@champion" in res.output
    res = runner.invoke(app, ["score", "--help"])
    assert res.exit_code == 0 and "--shard" in res.output and "http://HOST:PORT" in res.output


def test_shards_are_one_based() -> None:
    assert parse_score_shard("1/2") == (1, 2) and parse_score_shard("2/2") == (2, 2)
    for bad in ("0/2", "3/2", "a/b", "1"):
        with pytest.raises(typer.BadParameter):
            parse_score_shard(bad)


def test_missing_input_is_a_domain_error(tmp_path) -> None:
    res = CliRunner().invoke(app, ["score", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                                   "--model", str(tmp_path / "m.pt"), "--quiet"])
    assert res.exit_code == 2 and "does not exist" in res.output
