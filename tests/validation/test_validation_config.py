"""Thresholds: packaged defaults, per-dataset override files, and errors that name the bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esi.errors import ConfigError
from esi.validation.config import CATALOG, SIGNAL_METRICS, default_thresholds, load_thresholds, severity_of


def test_defaults_cover_every_metric_and_expectation() -> None:
    cfg = default_thresholds()
    assert cfg["expected"]["fs"] == 500 and cfg["expected"]["n_samples"] == 5000
    assert len(cfg["expected"]["leads"]) == 12
    assert set(cfg["signal"]["metrics"]) == set(SIGNAL_METRICS)
    for name, (table, level, severity, _desc) in CATALOG.items():
        assert table in ("header", "manifest", "signal") and level in ("dataset", "record")
        if name not in SIGNAL_METRICS:
            assert severity in ("critical", "warning")


def test_json_override_merges_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"manifest": {"age_max": 110}, "signal": {"metrics": {
        "hf_noise_ratio": {"warning_max": 0.4}}}, "severity": {"subject_present": "critical"}}))
    cfg = load_thresholds(path)
    assert cfg["manifest"]["age_max"] == 110
    assert cfg["manifest"]["age_min"] == 0  # untouched defaults stay
    assert cfg["signal"]["metrics"]["hf_noise_ratio"] == {"critical_max": 0.6, "warning_max": 0.4}
    assert severity_of("subject_present", cfg) == "critical"
    assert severity_of("age_in_range", cfg) == "critical"


def test_toml_override(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[expected]\nfs = 250\n\n[quarantine]\nmax_fraction = 0.5\n')
    cfg = load_thresholds(path)
    assert cfg["expected"]["fs"] == 250 and cfg["quarantine"]["max_fraction"] == 0.5


@pytest.mark.parametrize(("override", "key"), [
    ({"manifest": {"age_maximum": 3}}, "manifest.age_maximum"),
    ({"signal": {"metrics": {"hf_noise_ratio": {"warn_max": 0.4}}}},
     "signal.metrics.hf_noise_ratio.warn_max"),
    ({"signal": {"metrics": {"snr": {"warning_max": 1}}}}, "signal.metrics.snr"),
    ({"qurantine": {}}, "qurantine"),
    ({"severity": {"age_in_rang": "warning"}}, "age_in_rang"),
])
def test_unknown_keys_are_named(override: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_thresholds(override)


@pytest.mark.parametrize("override", [
    {"manifest": {"age_max": "old"}},
    {"expected": {"leads": "I,II"}},
    {"severity": {"age_in_range": "fatal"}},
    {"signal": {"metrics": {"amplitude_mv": {"critical_max": "high"}}}},
])
def test_bad_values_are_config_errors(override: dict) -> None:
    with pytest.raises(ConfigError):
        load_thresholds(override)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_thresholds(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        load_thresholds(bad)
