"""validate_store end to end: each injected fault is caught by the expectation named for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esi.data.record import LEADS
from esi.errors import DatasetNotFoundError, ValidationFailed
from esi.validation import validate_store

NAN, FLAT, CLIP, AGE, SEX = 3, 5, 7, 9, 11  # rows of the record-level faults


def names(failures) -> set[str]:
    return {f.expectation for f in failures}


def failure(failures, name):
    return next(f for f in failures if f.expectation == name)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, storekit):
    """One store with five record-level faults, validated once."""
    x = storekit.synth(40, seed=7)
    x[NAN, 4] = np.nan  # a NaN lead (aVL)
    x[FLAT, 9] = 0.0  # a flat lead (V4)
    peak = 0.25 * np.abs(x[CLIP, 1]).max()
    x[CLIP, 1] = np.clip(x[CLIP, 1], -peak, peak)  # a clipped lead (II)
    rows = storekit.rows(40)
    rows[AGE]["age"] = 300.0
    rows[SEX]["sex"] = "U"
    root = tmp_path_factory.mktemp("faulty")
    store = storekit.write(root / "store", x, rows, shard_size=16)
    report = validate_store(store, root / "report", progress=False)
    return store, root / "report", report, rows


def quarantine_reasons(store: Path) -> dict[str, set[str]]:
    q = pd.read_parquet(store / "quarantine.parquet")
    return {r.record_id: set(r.failed_expectations.split(",")) for r in q.itertuples()}


@pytest.mark.parametrize(("row", "expectation"), [
    (NAN, "nan_fraction"), (FLAT, "flat_leads"), (CLIP, "clipping_fraction"), (AGE, "age_in_range"),
    (SEX, "sex_known"),
])
def test_record_faults_are_quarantined_by_name(faulty, row: int, expectation: str) -> None:
    store, _, report, rows = faulty
    rid = rows[row]["record_id"]
    assert expectation in quarantine_reasons(store)[rid]
    f = failure(report.quarantined_failures, expectation)
    assert rid in f.example_ids


def test_record_faults_do_not_fail_the_step_below_the_share(faulty) -> None:
    store, _, report, rows = faulty
    assert report.n_quarantined == 5 and report.quarantine_fraction == pytest.approx(5 / 40)
    assert not report.passed  # 12.5 % > the 10 % default: the step fails and says why
    assert report.critical_failures[0].expectation == "quarantine_share_within_limit"
    assert {"age_in_range", "sex_known", "flat_leads"} <= names(report.critical_failures)
    clean = set(quarantine_reasons(store)) ^ {rows[i]["record_id"] for i in (NAN, FLAT, CLIP, AGE, SEX)}
    assert not clean  # exactly the faulty records


def test_outputs_are_written(faulty) -> None:
    store, report_dir, report, rows = faulty
    gx = json.loads((report_dir / "gx_results.json").read_text())
    assert set(gx) == {"header", "manifest", "signal"}
    metas = [r["expectation_config"]["meta"]["name"] for t in gx.values() for r in t["results"]]
    assert {"record_id_unique", "header_fs_expected", "flat_leads", "age_in_range"} <= set(metas)
    html = (report_dir / "report.html").read_text()
    assert "age_in_range" in html and rows[AGE]["record_id"] in html and "FAILED" in html
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["passed"] is False and summary["n_quarantined"] == 5
    in_report = pd.read_parquet(report_dir / "quarantine.parquet")
    assert in_report.equals(pd.read_parquet(store / "quarantine.parquet"))
    assert len(pd.read_parquet(report_dir / "signal_stats.parquet")) == 40
    with pytest.raises(ValidationFailed, match="quarantine_share_within_limit"):
        report.raise_for_failures()


def test_quarantine_is_honoured_by_the_dataset(faulty) -> None:
    from esi.data.dataset import EcgStoreDataset

    store, _, _, rows = faulty
    ds = EcgStoreDataset(store)
    bad = {rows[i]["record_id"] for i in (NAN, FLAT, CLIP, AGE, SEX)}
    assert len(ds) == 35
    assert not bad & {ds[i]["record_id"] for i in range(len(ds))}
    assert len(EcgStoreDataset(store, exclude_quarantined=False)) == 40


def test_share_limit_is_configurable(faulty, tmp_path: Path) -> None:
    store, _, _, _ = faulty
    report = validate_store(store, tmp_path / "r", thresholds={"quarantine": {"max_fraction": 0.2}},
                            progress=False, write_quarantine=False)
    assert report.passed and report.n_quarantined == 5 and not report.critical_failures
    assert "5 quarantined" in report.message()


def test_clean_store_passes(make_store, tmp_path: Path) -> None:
    store = make_store()
    report = validate_store(store, tmp_path / "r", progress=False)
    assert report.passed, report.message()
    assert report.n_quarantined == 0 and not report.warnings and not report.critical_failures
    assert len(pd.read_parquet(store / "quarantine.parquet")) == 0
    assert len(report.expectations) >= 25


@pytest.fixture(scope="module")
def dataset_faults(tmp_path_factory: pytest.TempPathFactory, storekit) -> dict[str, tuple[Path, object]]:
    """Two stores carrying the dataset-level faults (GX costs seconds per run, so faults share stores):
    A: an 11-lead store (header and arrays), header fs 250 instead of 500, a duplicated record id;
    B: a header that names 12 leads in a non-canonical order over 11-lead arrays and promises 25 records."""
    root = tmp_path_factory.mktemp("dataset_faults")
    x = storekit.synth(20, seed=2)
    rows = storekit.rows(20)
    rows[6]["record_id"] = rows[5]["record_id"]
    a = storekit.write(root / "a", x[:, :11], rows, leads=LEADS[:11], header={"fs": 250})
    order = [LEADS[i] for i in [1, 0, *range(2, 12)]]
    b = storekit.write(root / "b", x[:, :11], storekit.rows(20), leads=order, header={"n_records": 25})
    return {name: (path, validate_store(path, root / f"report-{name}", progress=False))
            for name, path in (("a", a), ("b", b))}


@pytest.mark.parametrize(("store", "fault", "expectation"), [
    ("a", "11-lead record (header leads)", "header_leads_canonical"),
    ("a", "wrong fs", "header_fs_expected"),
    ("a", "duplicated ids", "record_id_unique"),
    ("b", "leads out of canonical order", "header_leads_canonical"),
    ("b", "11-lead arrays under a 12-lead header", "signal_shape_matches_header"),
    ("b", "header n_records disagrees with the manifest", "manifest_matches_header"),
])
def test_dataset_faults_fail_the_step(dataset_faults, store: str, fault: str, expectation: str) -> None:
    _, report = dataset_faults[store]
    assert not report.passed, fault
    f = failure(report.critical_failures, expectation)
    assert f.n_records >= 1 and f.example_ids
    assert expectation in report.message()


def test_dataset_fault_details(dataset_faults) -> None:
    path_a, a = dataset_faults["a"]
    dup = failure(a.critical_failures, "record_id_unique")
    assert dup.example_ids[0] == "ptbxl/00006" and dup.n_records == 2
    assert set(quarantine_reasons(path_a)) == {"ptbxl/00006"} and a.n_quarantined == 2
    observed = {r["name"]: r["observed"] for r in a.expectations}
    assert "250" in observed["header_fs_expected"] and "V5" in observed["header_leads_canonical"]
    assert "padding_consistent" in names(a.warnings)  # 5000 samples at a claimed 250 Hz do not add up
    # the 11-lead signals were still analysed (lead-based statistics use the header's names)
    assert not {"flat_leads", "nan_fraction", "signal_shape_matches_header"} & names(
        a.critical_failures + a.quarantined_failures)
    _, b = dataset_faults["b"]
    assert {"header_fs_expected", "record_id_unique"}.isdisjoint(names(b.critical_failures))


def test_strict_turns_warnings_critical(make_store, storekit, tmp_path: Path) -> None:
    x = storekit.synth(20, seed=4)
    x[2] += 1.0  # baseline offset of 1 mV: a warning (0.5 < 1 < 3)
    rows = storekit.rows(20)
    rows[4]["subject_id"] = None  # PTB-XL has subjects: a warning
    store = make_store("warn", signals=x, rows=rows)
    report = validate_store(store, tmp_path / "r", progress=False)
    assert report.passed and report.n_quarantined == 0
    assert {"baseline_offset_mv", "subject_present"} <= names(report.warnings)
    strict = validate_store(store, tmp_path / "s", progress=False, strict=True)
    assert strict.n_quarantined == 2 and not strict.warnings
    assert {"baseline_offset_mv", "subject_present"} <= names(strict.quarantined_failures)
    # strict means a quarantine limit of 0: 2 of 20 records failing (formerly warnings) fail the step
    assert not strict.passed and strict.max_quarantine_fraction == 0.0
    assert {"baseline_offset_mv", "subject_present"} <= names(strict.critical_failures)


def test_manifest_record_faults(make_store, storekit, tmp_path: Path) -> None:
    rows = storekit.rows(20)
    rows[1]["fold"] = 11
    rows[2]["fold"] = None  # PTB-XL has folds
    rows[3]["labels"] = "{}"  # a labelled source without a label
    rows[4]["original_n_samples"], rows[4]["padded_samples"] = 500, 4500  # 1 s at 500 Hz: too short
    rows[5]["padded_samples"] = 1000  # the original was a full 10 s
    rows[6]["source"], rows[6]["fold"], rows[6]["subject_id"] = "georgia", None, None  # no folds there: fine
    rows[6]["label_system"], rows[6]["labels"] = "none", "{}"  # an unlabelled source: fine
    store = make_store("manifest", rows=rows)
    report = validate_store(store, tmp_path / "r", progress=False,
                            thresholds={"quarantine": {"max_fraction": 0.5}})
    reasons = quarantine_reasons(store)
    assert reasons == {"ptbxl/00002": {"fold_in_range"}, "ptbxl/00003": {"fold_present"},
                       "ptbxl/00004": {"labels_present"}, "ptbxl/00005": {"original_duration_sufficient"}}
    assert report.passed and failure(report.warnings, "padding_consistent").example_ids == ["ptbxl/00006"]
    assert failure(report.warnings, "padding_small").example_ids == ["ptbxl/00005"]  # 90 % padding


def test_missing_store_is_a_domain_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="esi data prepare"):
        validate_store(tmp_path / "nothing", tmp_path / "r", progress=False)
