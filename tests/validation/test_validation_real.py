"""The real sample records (PTB-XL, Challenge sources, CODE-15, PTB) pass validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from esi.validation import validate_store

SOURCES = [("ptbxl", "ptbxl"), ("challenge", "georgia"), ("challenge", "chapman_shaoxing"),
           ("challenge", "ningbo"), ("challenge", "ptbxl_challenge2021"), ("challenge", "cpsc2018"),
           ("wfdb", "code15_challenge2025"), ("wfdb", "ptb")]


def _real_store(real_dir: Path, out: Path, storekit) -> Path:
    """Read + preprocess the real records as prepare does, then write them with the test writer (this
    keeps the test independent of the label harmoniser, which prepare also runs)."""
    from esi.data.preprocess import PreprocessConfig, preprocess
    from esi.data.readers import iter_records

    config = PreprocessConfig()
    rows, sigs = [], []
    for source, folder in SOURCES:
        for record in iter_records(source, real_dir / folder):
            for win in preprocess(record, config):
                m = win.meta
                rows.append({
                    "record_id": win.record_id, "source": win.source, "subject_id": win.subject_id,
                    "age": win.age, "sex": win.sex, "fold": win.fold, "label_system": win.label_system,
                    "labels": json.dumps(win.labels, sort_keys=True), "conditions": "{}",
                    "report": win.report,
                    "path": win.path, "original_fs": float(m["original_fs"]),
                    "original_n_samples": int(m["original_n_samples"]), "window": int(m["window"]),
                    "padded_samples": int(m["padded_samples"]), "nan_fraction": float(m["nan_fraction"]),
                    "nan_filled": bool(m["nan_filled"]), "unmapped": "[]"})
                sigs.append(win.signal)
    return storekit.write(out, np.stack(sigs), rows)


def test_real_sample_records_pass(real_dir: Path, tmp_path: Path, storekit) -> None:
    store = _real_store(real_dir, tmp_path / "real", storekit)
    report = validate_store(store, tmp_path / "report", progress=False)
    assert report.n_records >= 20
    assert report.passed, report.message()
    assert report.n_quarantined == 0, report.quarantined_failures
    by_name = {r["name"]: r for r in report.expectations}
    assert by_name["fold_present"]["success"] and by_name["labels_present"]["success"]


def test_prepared_ptbxl_store_passes(real_dir: Path, tmp_path: Path) -> None:
    """The full path: esi.data.prepare on the real PTB-XL samples, then validation."""
    pytest.importorskip("esi.conditions.harmonize")
    from esi.data.prepare import prepare

    summary = prepare("ptbxl", real_dir / "ptbxl", tmp_path / "store", progress=False)
    assert summary.complete
    report = validate_store(tmp_path / "store", tmp_path / "report", progress=False)
    assert report.passed and report.n_quarantined == 0, report.message()


def test_synthetic_generator_store_passes(tmp_path: Path) -> None:
    """The synthetic generator -> prepare -> validation: no critical failure, nothing quarantined."""
    pytest.importorskip("esi.conditions.harmonize")
    from esi.data.prepare import prepare
    from esi.data.synthetic import generate_dataset

    generate_dataset(tmp_path / "synth", subjects=15, records_per_subject=2, seed=3, progress=False)
    assert prepare("ptbxl", tmp_path / "synth", tmp_path / "store", progress=False).complete
    report = validate_store(tmp_path / "store", tmp_path / "report", progress=False)
    assert report.passed and report.n_quarantined == 0, report.message()
