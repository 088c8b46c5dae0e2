"""The condition vocabulary: loading, checks on the packaged CSV, and the look-up API other modules use."""

from __future__ import annotations

import csv

import pytest

from esi.conditions.vocabulary import (
    CATEGORIES,
    CONDITIONS_CSV,
    Condition,
    Vocabulary,
    get_vocabulary,
    load_vocabulary,
    read_vocabulary,
)
from esi.errors import VocabularyError

HEADER = "condition_id,name,abbreviation,category,snomed,synonyms\n"


def test_packaged_vocabulary_matches_csv_rows() -> None:
    with CONDITIONS_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    vocab = load_vocabulary()
    assert len(vocab) == len(rows) >= 150
    assert vocab.ids() == [r["condition_id"] for r in rows]
    assert {c.category for c in vocab} <= set(CATEGORIES)
    for cond in vocab:
        # a numeric id is a SNOMED CT concept and must equal its snomed column
        if not cond.condition_id.startswith("esi:"):
            assert cond.snomed == cond.condition_id
        assert cond.name and cond.abbreviation


def test_load_is_cached_and_alias() -> None:
    assert load_vocabulary() is load_vocabulary() is get_vocabulary()


def test_getitem_contains_get_and_names() -> None:
    vocab = load_vocabulary()
    af = vocab["164889003"]
    assert isinstance(af, Condition)
    assert af.name == "atrial fibrillation" and af.abbreviation == "AF" and af.category == "rhythm"
    assert "164889003" in vocab and "nope" not in vocab
    assert vocab.get("nope") is None and vocab.get("164889003") is af
    assert vocab.name("426783006") == "sinus rhythm"
    assert vocab.names(["164889003", "59118001"]) == ["atrial fibrillation", "right bundle branch block"]
    assert vocab.category("59118001") == "conduction"
    assert sum(1 for _ in vocab) == len(vocab)


def test_unknown_id_raises_vocabulary_error_naming_it() -> None:
    vocab = load_vocabulary()
    with pytest.raises(VocabularyError, match="'esi:not_a_condition'"):
        vocab["esi:not_a_condition"]
    with pytest.raises(KeyError):  # VocabularyError is also a KeyError, so dict-style callers keep working
        vocab.name("123")
    with pytest.raises(VocabularyError, match="999"):
        vocab.names(["164889003", "999"])


@pytest.mark.parametrize(("text", "expected"), [
    ("atrial fibrillation", "164889003"),  # name
    ("ATRIAL FIBRILLATION", "164889003"),  # case-insensitive
    ("  right   bundle branch block ", "59118001"),  # whitespace collapsed
    ("AFIB", "164889003"),  # synonym (SCP code)
    ("crbbb", "59118001"),
    ("LBBB", "164909002"),  # abbreviation
    ("AMI", "57054005"),  # abbreviation of acute MI; the SCP code AMI (anterior MI) is mapped in scp_map.csv
    ("normal sinus rhythm", "426783006"),
    ("inferior infarct", "esi:inferior_mi"),
])
def test_lookup(text: str, expected: str) -> None:
    cond = load_vocabulary().lookup(text)
    assert cond is not None and cond.condition_id == expected


def test_lookup_is_exact_not_fuzzy() -> None:
    vocab = load_vocabulary()
    assert vocab.lookup("atrial fib") is None
    assert vocab.lookup("") is None


def test_by_abbreviation() -> None:
    vocab = load_vocabulary()
    assert vocab.by_abbreviation("IRBBB").condition_id == "713426002"
    assert vocab.by_abbreviation("irbbb").condition_id == "713426002"
    assert vocab.by_abbreviation("XYZ") is None


def test_terms_do_not_collide_between_conditions() -> None:
    seen: dict[str, str] = {}
    for cond in load_vocabulary():
        for term in cond.terms:
            key = " ".join(term.split()).casefold()
            assert seen.setdefault(key, cond.condition_id) == cond.condition_id, (term, cond.condition_id)


def test_read_vocabulary_errors(tmp_path) -> None:
    bad_cat = tmp_path / "cat.csv"
    bad_cat.write_text(HEADER + "164889003,atrial fibrillation,AF,arrhythmia,164889003,\n")
    with pytest.raises(VocabularyError, match="category 'arrhythmia'"):
        read_vocabulary(bad_cat)
    dup = tmp_path / "dup.csv"
    dup.write_text(HEADER + "164889003,atrial fibrillation,AF,rhythm,164889003,\n"
                            "164889003,atrial fibrillation,AF,rhythm,164889003,\n")
    with pytest.raises(VocabularyError, match="duplicate condition id"):
        read_vocabulary(dup)
    bad_id = tmp_path / "id.csv"
    bad_id.write_text(HEADER + "Atrial Fib,atrial fibrillation,AF,rhythm,,\n")
    with pytest.raises(VocabularyError, match="line 2"):
        read_vocabulary(bad_id)
    missing = tmp_path / "cols.csv"
    missing.write_text("condition_id,name\n1,x\n")
    with pytest.raises(VocabularyError, match="missing column"):
        read_vocabulary(missing)
    with pytest.raises(VocabularyError, match="not found"):
        read_vocabulary(tmp_path / "absent.csv")


def test_small_vocabulary_from_file(tmp_path) -> None:
    path = tmp_path / "v.csv"
    path.write_text(HEADER + '164889003,atrial fibrillation,AF,rhythm,164889003,AFIB|a-fib\n'
                             'esi:foo_bar,foo bar,FB,other,,"foo, bar|fb pattern"\n')
    vocab = read_vocabulary(path)
    assert isinstance(vocab, Vocabulary) and len(vocab) == 2
    assert vocab["esi:foo_bar"].snomed is None
    assert vocab["esi:foo_bar"].synonyms == ("foo, bar", "fb pattern")
    assert vocab.lookup("A-FIB").condition_id == "164889003"
