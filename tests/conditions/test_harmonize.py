"""Label harmonisation: PTB-XL SCP, Challenge SNOMED, ICBEB classes and MIMIC report statements."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from esi.conditions.harmonize import (
    Harmonized,
    harmonize,
    icbeb_table,
    reset_unmapped_counts,
    scp_table,
    snomed_table,
    split_report,
    unmapped_counts,
)
from esi.conditions.mimic_rules import QUALIFIER_CERTAINTY, coverage, map_statement
from esi.conditions.vocabulary import load_vocabulary
from esi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCP_STATEMENTS = ROOT / "esi" / "data" / "scp_statements.csv"
FIXTURES_REAL = ROOT / "tests" / "fixtures" / "real"
DX_HEADERS = ROOT / "tests" / "fixtures" / "dx_headers"  # headers of every real sample record (PROVENANCE.md)
MIMIC_DEV = FIXTURES_REAL / "mimic_statements" / "statements_dev.txt"



def _scp_codes() -> list[str]:
    with SCP_STATEMENTS.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return [row[0] for row in reader if row and row[0]]


# ---------------------------------------------------------------------------------------------- PTB-XL SCP
def test_all_71_scp_codes_map() -> None:
    codes = _scp_codes()
    assert len(codes) == 71
    vocab = load_vocabulary()
    # Every one of the 71 is a diagnosis, form or rhythm statement with a condition in the vocabulary (SR,
    # PACE and ABQRS included), so none is classed non-diagnostic: each must give at least one condition.
    unmapped = []
    for code in codes:
        out = harmonize("scp", {code: 100.0})
        if not out.conditions or out.unmapped or out.non_diagnostic:
            unmapped.append(code)
        assert all(cid in vocab for cid in out.conditions)
    assert unmapped == []
    assert set(scp_table()) == set(codes)  # the map holds exactly the PTB-XL statements


def test_scp_code_meanings() -> None:
    out = harmonize("scp", {"AMI": 100.0, "IMI": 100.0, "CLBBB": 100.0, "LAO/LAE": 100.0, "PRC(S)": 100.0})
    # SCP "AMI" is anterior (not acute) myocardial infarction
    assert set(out.conditions) == {"54329005", "esi:inferior_mi", "164909002", "67741000119109",
                                   "esi:premature_complexes"}


@pytest.mark.parametrize(("likelihood", "certainty"), [(0.0, 1.0), (100.0, 1.0), (35.0, 0.35), (80, 0.8),
                                                       (150.0, 1.0), (float("nan"), 1.0)])
def test_scp_likelihood_to_certainty(likelihood: float, certainty: float) -> None:
    out = harmonize("scp", {"IMI": likelihood})
    assert out.conditions == {"esi:inferior_mi": pytest.approx(certainty)}


def test_scp_same_condition_keeps_highest_certainty() -> None:
    # NDT and NT_ both mean non-specific T-wave changes
    out = harmonize("scp", {"NDT": 50.0, "NT_": 80.0})
    assert out.conditions == {"esi:nonspecific_t_wave_changes": pytest.approx(0.8)}


# ------------------------------------------------------------------------------------ Challenge SNOMED
def _header_dx_codes() -> dict[str, set[str]]:
    """'#Dx: a,b' codes of every .hea under the real fixture folders, by label system of the code."""
    codes: dict[str, set[str]] = {"snomed": set(), "scp": set()}
    roots = [FIXTURES_REAL, DX_HEADERS]
    for root in roots:
        for hea in root.rglob("*.hea"):
            for line in hea.read_text(errors="replace").splitlines():
                m = re.match(r"#\s*Dx:\s*(.*)", line)
                if not m:
                    continue
                for code in (c.strip() for c in m.group(1).split(",")):
                    if code and code.lower() != "unknown":
                        codes["snomed" if code.isdigit() else "scp"].add(code)
    return codes


def test_every_snomed_code_in_real_headers_maps() -> None:
    codes = _header_dx_codes()
    print(f"\nDx codes in real headers: {len(codes['snomed'])} SNOMED, {len(codes['scp'])} SCP")
    assert len(codes["snomed"]) >= 20
    missing = sorted(c for c in codes["snomed"] if not harmonize("snomed", {c: 1.0}).conditions)
    assert missing == []
    # PTB-XL records in Challenge 2024 layout write SCP codes in '#Dx'
    assert sorted(c for c in codes["scp"] if not harmonize("scp", {c: 0.0}).conditions) == []


def test_challenge_equivalent_codes() -> None:
    table = snomed_table()
    assert table["17338001"] == ("427172004",)  # ventricular premature beats -> PVC
    assert table["63593006"] == ("284470004",)  # supraventricular premature beats -> PAC
    assert table["733534002"] == ("164909002",)  # complete LBBB -> LBBB
    assert table["713427006"] == ("59118001",)  # complete RBBB -> RBBB
    out = harmonize("snomed", {"426783006": 1.0, "17338001": 1.0, "713427006": 1.0})
    assert out.conditions == {"426783006": 1.0, "427172004": 1.0, "59118001": 1.0}


# ----------------------------------------------------------------------------------------------- ICBEB
ICBEB_EXPECTED = {
    "NORM": "164854000", "AFIB": "164889003", "1AVB": "270492004", "CLBBB": "164909002", "CRBBB": "59118001",
    "PAC": "284470004", "VPC": "427172004", "STD": "429622005", "STE": "164931005",
}
ICBEB_ALIASES = {"Normal": "NORM", "AF": "AFIB", "I-AVB": "1AVB", "LBBB": "CLBBB", "RBBB": "CRBBB",
                 "PVC": "VPC"}


def test_icbeb_nine_classes_by_name_alias_and_number() -> None:
    for number, (name, cid) in enumerate(ICBEB_EXPECTED.items(), start=1):
        assert harmonize("icbeb", {name: 1.0}).conditions == {cid: 1.0}
        assert harmonize("icbeb", {str(number): 1.0}).conditions == {cid: 1.0}
        assert harmonize("icbeb", {name.lower(): 1.0}).conditions == {cid: 1.0}
    for alias, name in ICBEB_ALIASES.items():
        assert harmonize("icbeb", {alias: 1.0}).conditions == {ICBEB_EXPECTED[name]: 1.0}
    assert len({ids for ids in icbeb_table().values()}) == 9


def test_icbeb_reader_class_names_map() -> None:
    from esi.data.readers.icbeb import CLASSES

    out = harmonize("icbeb", {name: 1.0 for name in CLASSES.values()})
    assert sorted(out.conditions) == sorted(ICBEB_EXPECTED.values()) and out.unmapped == []


# ---------------------------------------------------------------------------- unknown input, other systems
def test_unknown_codes_go_to_unmapped_and_are_counted() -> None:
    reset_unmapped_counts()
    out = harmonize("scp", {"NOT_A_CODE": 50.0, "SR": 0.0})
    assert out.conditions == {"426783006": 1.0} and out.unmapped == ["NOT_A_CODE"]
    out = harmonize("snomed", {"999999999": 1.0})
    assert out.conditions == {} and out.unmapped == ["999999999"]
    out = harmonize("icbeb", {"10": 1.0})
    assert out.unmapped == ["10"]
    harmonize("scp", {"NOT_A_CODE": 10.0})
    counts = unmapped_counts()
    assert counts[("scp", "NOT_A_CODE")] == 2 and counts[("snomed", "999999999")] == 1


def test_none_and_empty_and_bad_system() -> None:
    assert harmonize("none", {"Chagas": 1.0}) == Harmonized()
    assert harmonize("scp", {}) == Harmonized()
    assert harmonize("mimic", {}, None) == Harmonized()
    with pytest.raises(ConfigError, match="unknown label system 'loinc'"):
        harmonize("loinc", {"x": 1.0})


def test_mapping_tables_are_read_once_not_per_record() -> None:
    """harmonize runs once per record of million-record archives: the mapping CSVs must be parsed once."""
    from esi.conditions import harmonize as module

    module.scp_table.cache_clear()
    labels = {"NORM": 100.0, "SR": 0.0, "IMI": 35.0, "LAFB": 100.0}
    first = harmonize("scp", labels)
    for _ in range(200):
        assert harmonize("scp", labels) == first
    info = module.scp_table.cache_info()
    assert info.misses == 1 and info.hits >= 200


# ----------------------------------------------------------------------------------------- MIMIC statements
@pytest.mark.parametrize(("statement", "expected"), [
    ("Sinus rhythm with 1st degree A-V block", {"426783006": 1.0, "270492004": 1.0}),
    ("Sinus rhythm with borderline 1st degree A-V block", {"426783006": 1.0, "270492004": 0.5}),
    ("Probable left ventricular hypertrophy", {"164873001": 0.7}),
    ("Possible atrial flutter with PVCs.", {"164890007": 0.5, "427172004": 1.0}),
    ("Consider left atrial enlargement", {"67741000119109": 0.5}),
    ("Cannot rule out anterior infarct - age undetermined", {"54329005": 0.3}),
    ("Borderline prolonged QT interval", {"111975006": 0.5}),
    ("Abnormal Q suggests anterior infarct", {"164917005": 1.0, "54329005": 0.6}),
    ("Abnormal T, probable ischemia, anterior leads", {"164934002": 1.0, "426434006": 0.7}),
    ("Anterior infarct, old", {"54329005": 1.0, "164867002": 1.0}),
    ("Probable inferior infarct, recent", {"esi:inferior_mi": 0.7, "57054005": 0.7}),
    ("LVH with secondary repolarization abnormality", {"164873001": 1.0, "370365005": 1.0}),
    ("Atrial flutter with 2:1 A-V block.", {"164890007": 1.0}),  # 2:1 is the flutter's conduction ratio
    ("Predominant 2:1 AV block", {"195042002": 1.0}),
    ("Atrial fibrillation with rapid ventricular response", {"164889003": 1.0, "314208002": 1.0}),
    ("Frequent PVCs or aberrant ventricular conduction", {"427172004": 0.5, "esi:aberrant_conduction": 0.5}),
    ("Inferior/lateral ST-T changes may be due to myocardial ischemia",
     {"428750005": 1.0, "esi:inferolateral_ischaemia": 0.5}),
    ("Anterolateral ST elevation - cannot rule out myocardial injury",
     {"164931005": 1.0, "413444003": 0.3, "esi:anterolateral_ischaemia": 0.3}),
    ("Lateral ST elevation - repeat if myocardial injury is suspected", {"164931005": 1.0}),
    ("Sinus bradycardia - consider sinus rhythm with 2:1 S-A block.",
     {"426177001": 1.0, "426783006": 0.5, "65778007": 0.5}),
    ("RIGHT AXIS DEVIATION - LEFT POSTERIOR FASCICULAR BLOCK IF NO PULMONARY DISEASE",
     {"47665007": 1.0, "445211001": 0.5}),
    ("Poor R wave progression - probable normal variant", {"365413008": 0.5}),
    ("Within normal limits for age", {"164854000": 1.0}),
    ("Ventricular-paced rhythm", {"251266004": 1.0, "10370003": 1.0}),
    # vocabulary names/synonyms fill the gaps the rules leave ("ventricular escape", "mobitz ii")
    ("Sinus pause with ventricular escape", {"5609005": 1.0, "81898007": 1.0}),
    ("Sinus rhythm with 2nd degree A-V block, Mobitz II.", {"426783006": 1.0, "195042002": 1.0,
                                                             "426183003": 1.0}),
    ("Possible Brugada pattern", {"418818005": 0.5}),
    # "consider" covers the whole list that follows it
    ("Prolonged QT interval, consider myocardial disease, electrolyte imbalance, or drug effects",
     {"111975006": 1.0, "esi:electrolyte_abnormality": 0.5}),
])
def test_statement_rules(statement: str, expected: dict[str, float]) -> None:
    got = map_statement(statement)
    assert got.conditions == pytest.approx(expected), got
    assert got.status == "mapped"


@pytest.mark.parametrize(("qualifier", "name"), [
    ("Probable", "probable"), ("Possible", "possible"), ("Consider", "consider"),
    ("Cannot rule out", "cannot_rule_out"), ("Borderline", "borderline"), ("Suggests", "suggests"),
])
def test_qualifier_certainty(qualifier: str, name: str) -> None:
    got = map_statement(f"{qualifier} right ventricular hypertrophy")
    assert got.conditions == {"89792004": QUALIFIER_CERTAINTY[name]}
    assert got.qualifier == name
    assert map_statement("Right ventricular hypertrophy").conditions == {"89792004": 1.0}
    assert 0 < QUALIFIER_CERTAINTY[name] < 1


def test_qualifier_table_order() -> None:
    q = QUALIFIER_CERTAINTY
    assert q["probable"] > q["suggests"] > q["possible"] == q["consider"] == q["borderline"]
    assert q["borderline"] > q["cannot_rule_out"]


@pytest.mark.parametrize(("statement", "positive", "negated", "klass"), [
    ("No ST elevation", {}, {"164931005"}, "negative_finding"),
    ("Without atrial fibrillation", {}, {"164889003"}, "negative_finding"),
    ("Inferior Q waves without ST elevation", {"164917005": 1.0}, {"164931005"}, None),
    ("Sinus rhythm. No PVCs", {"426783006": 1.0}, {"427172004"}, None),
    # "no longer" also marks a comparison with a previous tracing
    ("Atrial fibrillation no longer present", {}, {"164889003"}, "comparison"),
    ("Right bundle branch block, no longer present", {}, {"59118001"}, "comparison"),
    ("Left bundle branch block has resolved", {}, {"164909002"}, "negative_finding"),
    # serial comparison: the rhythm after "has replaced" is the previous tracing's
    ("Atrial fibrillation has replaced Sinus rhythm", {"164889003": 1.0}, {"426783006"}, None),
])
def test_negation(statement: str, positive: dict[str, float], negated: set[str], klass: str | None) -> None:
    got = map_statement(statement)
    assert got.conditions == positive
    assert set(got.negated) == negated
    assert got.non_diagnostic == klass


@pytest.mark.parametrize(("statement", "klass"), [
    ("*** technically unsatisfactory tracing ***", "technical_quality"),
    ("Baseline wander in lead(s) V1,V2", "technical_quality"),
    ("Lead(s) unsuitable for analysis: V1 V2", "technical_quality"),
    ("Warning: Data quality may affect computer interpretation!!", "technical_quality"),
    ("Possible sequence error: V3,V4 omitted", "lead_placement"),
    ("Probable precordial electrode reversal", "lead_placement"),
    ("*** report made without knowing patient's sex ***", "patient_data"),
    ("--- Pediatric criteria used ---", "patient_data"),
    ("Compared with ECG of 01-Jan-2150, no significant change", "comparison"),
    ("Vent. rate has increased BY 30 BPM", "comparison"),
    ("Abnormal ECG", "summary"),
    ("Borderline ECG", "summary"),
    ("Summary: ABNORMAL", "summary"),
    ("Otherwise normal ECG", "summary"),
    ("CHANGES MAY BE DUE PARTLY TO RATE/RHYTHM", "interpretation_note"),
    ("UNDETERMINED RHYTHM", "rhythm_description"),
    ("QRS duration 140 ms", "measurement"),
    ("Vent. rate 72 BPM", "measurement"),
])
def test_non_diagnostic_classes(statement: str, klass: str) -> None:
    got = map_statement(statement)
    assert got.conditions == {} and got.non_diagnostic == klass and got.status == "non_diagnostic"


def test_lead_reversal_is_both_a_condition_and_a_remark() -> None:
    got = map_statement("--- Suspect limb lead reversal - only V1-V6 analyzed ---")
    assert got.conditions == {"251139008": 1.0} and got.non_diagnostic == "lead_placement"


def test_unknown_statement_is_unmapped_not_an_error() -> None:
    got = map_statement("Quantum flux capacitor misaligned")
    assert got.status == "unmapped" and got.conditions == {} and got.non_diagnostic is None


def test_mimic_coverage_on_real_statements() -> None:
    statements = [s for s in MIMIC_DEV.read_text().splitlines() if s.strip()]
    assert len(statements) == 1931
    cov = coverage(statements)
    print(f"\nMIMIC statements: {cov.total}; mapped {len(cov.mapped)} ({cov.mapped_share:.1%}), "
          f"non-diagnostic {len(cov.non_diagnostic)} ({cov.non_diagnostic_share:.1%}), "
          f"unmapped {len(cov.unmapped)} ({cov.unmapped_share:.1%}); classes {cov.by_class}")
    for s in cov.unmapped:
        print(f"  unmapped: {s}")
    # measured: 79.4 % mapped, 20.6 % non-diagnostic, 0 % unmapped; margins allow small rule changes
    assert cov.mapped_share >= 0.77
    assert cov.mapped_share + cov.non_diagnostic_share >= 0.98
    assert cov.total == len(cov.mapped) + len(cov.non_diagnostic) + len(cov.unmapped)
    vocab = load_vocabulary()
    for s in cov.mapped:
        m = map_statement(s)
        assert all(cid in vocab and 0 < c <= 1 for cid, c in m.conditions.items()), s


def test_mimic_harmonize_from_report_and_labels() -> None:
    report = ("Sinus rhythm with PVCs; Atrial fibrillation; WITH RAPID VENTRICULAR RESPONSE; "
              "Abnormal ECG; Quantum flux capacitor misaligned")
    out = harmonize("mimic", {}, report)
    assert out.conditions == {"426783006": 1.0, "427172004": 1.0, "164889003": 1.0, "314208002": 1.0}
    assert out.non_diagnostic == ["Abnormal ECG"]
    assert out.unmapped == ["Quantum flux capacitor misaligned"]
    # labels, when present, are the statements themselves (exact, no re-splitting)
    out2 = harmonize("mimic", {"Possible left ventricular hypertrophy": 1.0}, "ignored; report")
    assert out2.conditions == {"164873001": 0.5}
    assert split_report(" a ;b;  ; c ") == ["a", "b", "c"]


def test_mimic_reader_report_round_trip(tmp_path: Path) -> None:
    """Statements as the MIMIC reader builds them (machine_measurements.csv report_0..) harmonise."""
    from esi.data.readers.mimic import list_refs

    (tmp_path / "record_list.csv").write_text("subject_id,study_id,file_name,ecg_time,path\n"
                                              "1,101,101,2150-01-01,files/p1/s101/101\n")
    (tmp_path / "machine_measurements.csv").write_text(
        "subject_id,study_id,report_0,report_1,report_2\n"
        "1,101,Sinus tachycardia,Borderline T wave abnormalities,"
        "--- Technically unsatisfactory tracing ---\n")
    (ref,) = list_refs(tmp_path)
    out = harmonize(ref.meta["label_system"], {}, ref.meta["report"])
    assert out.conditions == {"427084000": 1.0, "164934002": 0.5}
    assert out.non_diagnostic == ["--- Technically unsatisfactory tracing ---"]
    assert harmonize("mimic", ref.meta["labels"], ref.meta["report"]) == out
