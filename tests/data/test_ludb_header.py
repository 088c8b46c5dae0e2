"""LUDB headers: '#<age>:' keys and the '#<diagnoses>:' block of free-text statements (label system 'text')."""

from __future__ import annotations

from pathlib import Path

from esi.data.readers import list_refs
from esi.data.readers.base import parse_comments

LUDB = Path(__file__).resolve().parents[1] / "fixtures" / "real_benchmark" / "ludb"


def test_statement_block_is_kept_whole_and_bracketed_keys_are_read() -> None:
    info = parse_comments(["#<age>: 51", "#<sex>: F", "#<diagnoses>:", "#Rhythm: Atrial fibrillation.",
                           "#Electric axis of the heart: left axis deviation. ", "#Left ventricular hypertrophy."])
    assert info["age"] == "51" and info["sex"] == "F"
    assert info["diagnoses"].split("\n") == ["Rhythm: Atrial fibrillation.",
                                             "Electric axis of the heart: left axis deviation.",
                                             "Left ventricular hypertrophy."]
    assert "rhythm" not in info  # a statement's own colon does not make it a key


def test_comments_without_a_block_are_unchanged() -> None:
    info = parse_comments(["#Age: 74", "# Patient ID: 48705", "#Dx: 164889003,59118001"])
    assert info == {"age": "74", "patient id": "48705", "dx": "164889003,59118001"}


def test_ludb_records_get_age_sex_and_their_statements() -> None:
    refs = {r.record_id: r for r in list_refs("wfdb", LUDB)}
    assert len(refs) == 200
    first = refs["ludb/1"].meta
    assert first["age"] == 51 and first["sex"] == "F"
    assert first["label_system"] == "text"
    assert "Rhythm: Sinus bradycardia." in first["labels"]
