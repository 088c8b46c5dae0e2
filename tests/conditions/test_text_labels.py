"""Text labels where codes belong (CPSC 2018 '#Dx: AF'), and free-text statements (LUDB)."""

from __future__ import annotations

import pytest

from esi.conditions.harmonize import harmonize
from esi.conditions.text_labels import map_text_label, text_label_table
from esi.conditions.vocabulary import load_vocabulary

AF, RBBB, LBBB, IAVB = "164889003", "59118001", "164909002", "270492004"

# Each text label of the first CPSC 2018 release / Challenge abbreviations, and the condition it must give.
CASES = {
    "AF": AF, "AFIB": AF, "AFL": "164890007", "I-AVB": IAVB, "IAVB": IAVB, "1AVB": IAVB,
    "LBBB": LBBB, "CLBBB": LBBB, "RBBB": RBBB, "CRBBB": RBBB, "IRBBB": "713426002",
    "PAC": "284470004", "SVPB": "284470004", "PVC": "427172004", "VPB": "427172004",
    "STD": "429622005", "STE": "164931005", "Normal": "164854000", "NSR": "426783006", "SNR": "426783006",
    "TAb": "164934002", "TInv": "59931005", "LAD": "39732003", "RAD": "47665007", "LQT": "111975006",
}


@pytest.mark.parametrize(("label", "condition"), sorted(CASES.items()))
def test_each_text_label_of_a_dx_line_maps_to_its_condition(label: str, condition: str) -> None:
    got = harmonize("snomed", {label: 1.0})
    assert got.conditions == {condition: 1.0}, (label, got)
    assert got.unmapped == []


def test_text_labels_mix_with_codes_and_case_does_not_matter() -> None:
    got = harmonize("snomed", {"164889003": 1.0, "rbbb": 1.0, "i-avb": 1.0})
    assert set(got.conditions) == {AF, RBBB, IAVB}


def test_ambiguous_and_unknown_labels_stay_unmapped_instead_of_being_guessed() -> None:
    # 'CD' is the vocabulary's 'cardiac dysrhythmia' but PTB-XL's 'conduction disturbance'
    got = harmonize("snomed", {"CD": 1.0, "QQQ": 1.0, "99999999": 1.0})
    assert got.conditions == {}
    assert sorted(got.unmapped) == ["99999999", "CD", "QQQ"]


@pytest.mark.parametrize(("statement", "condition"), [
    ("Rhythm: Atrial fibrillation.", AF),
    ("Complete right bundle branch block.", RBBB),
    ("Complete left bundle branch block.", LBBB),
    ("I degree AV block.", IAVB),  # the MIMIC rules alone read this as an unspecified AV block
    ("III degree AV-block.", "27885002"),
    ("Left atrial hypertrophy.", "446813000"),  # not 'ventricular hypertrophy'
    ("Sinoatrial blockade, undefined.", "65778007"),
    ("Scar formation: apical.", "164867002"),
])
def test_ludb_statements_map_to_their_condition(statement: str, condition: str) -> None:
    got = harmonize("text", {statement: 1.0})
    assert condition in got.conditions, (statement, got)


def test_first_degree_block_is_not_reported_as_a_generic_av_block() -> None:
    assert set(map_text_label("I degree AV block.")) == {IAVB}


def test_every_row_of_the_table_names_vocabulary_conditions() -> None:
    vocab = load_vocabulary()
    table = text_label_table()
    assert len(table) >= 50
    assert all(cid in vocab for ids in table.values() for cid in ids)
