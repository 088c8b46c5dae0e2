"""Validation thresholds: packaged defaults (``thresholds.json``) merged with a per-dataset override file.

An override file (JSON or TOML) holds only the keys it changes, nested like the defaults, e.g.::

    [signal.metrics.hf_noise_ratio]
    warning_max = 0.4

    [severity]
    subject_present = "critical"

Unknown keys are a ConfigError that names the key, so a typo never silently keeps a default.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esi.errors import ConfigError

DEFAULTS_PATH = Path(__file__).with_name("thresholds.json")
SEVERITIES = ("critical", "warning", "off")
# Keys of a signal metric's threshold block; null disables that bound.
METRIC_BOUNDS = ("critical_min", "critical_max", "warning_min", "warning_max")

# Every expectation ESI runs: name -> (table, level, default severity, what it checks).
# level "dataset": a failure fails the step when critical (the header or the table as a whole is wrong).
# level "record": failing records are quarantined when critical; the step fails only when too many are.
CATALOG: dict[str, tuple[str, str, str, str]] = {
    "record_id_not_null": ("manifest", "dataset", "critical", "every row has a record_id"),
    "record_id_unique": ("manifest", "dataset", "critical", "record_id identifies one row"),
    "row_count_in_range": ("manifest", "dataset", "critical", "number of records within the expected range"),
    "manifest_matches_header": ("manifest", "dataset", "critical", "manifest rows == header n_records"),
    "header_leads_canonical": ("manifest", "dataset", "critical",
                               "header leads are the 12 standard leads in canonical order"),
    "header_fs_expected": ("manifest", "dataset", "critical", "header fs equals the expected sampling rate"),
    "header_n_samples_expected": ("manifest", "dataset", "critical",
                                  "header n_samples equals the expected window length"),
    "signal_shape_matches_header": ("signal", "dataset", "critical",
                                    "stored signal arrays have the header's leads x samples"),
    "age_in_range": ("manifest", "record", "critical", "age within [age_min, age_max] or null"),
    "age_recorded_in_range": ("manifest", "record", "warning",
                              "age as the source recorded it within [age_min, age_max] (preparation keeps an "
                              "age outside 0-120 as null and flags it)"),
    "sex_known": ("manifest", "record", "critical", "sex in the known set or null"),
    "fold_in_range": ("manifest", "record", "critical", "fold within [fold_min, fold_max] or null"),
    "fold_present": ("manifest", "record", "critical", "fold set for sources that have folds"),
    "labels_present": ("manifest", "record", "critical", "at least one label for labelled sources"),
    "subject_present": ("manifest", "record", "warning", "subject_id set for sources that have subjects"),
    "original_fs_plausible": ("manifest", "record", "warning", "original fs within a plausible range"),
    "original_duration_sufficient": ("manifest", "record", "critical",
                                     "original recording at least min_duration_s long"),
    "padding_consistent": ("manifest", "record", "warning",
                           "padded_samples agrees with original length, fs and header fs"),
    "padding_small": ("manifest", "record", "warning",
                      "padded share of the window at most padded_fraction_max"),
}
# Signal metrics are in CATALOG too (one entry each; their severity comes from which bounds are set).
SIGNAL_METRICS: dict[str, str] = {
    "nan_fraction": "share of missing samples (source NaNs filled at preparation, or NaNs in the store)",
    "flat_leads": "number of leads with near-zero variance (std below flat_std_mv)",
    "clipping_fraction": "largest per-lead share of samples pinned at the lead's extreme value",
    "amplitude_mv": "largest per-lead peak-to-peak amplitude (mV)",
    "baseline_offset_mv": "largest per-lead |median| (mV); preparation removes baseline wander",
    "hf_noise_ratio": "median over leads of the spectral energy above hf_cutoff_hz",
    "limb_residual": "Einthoven/Goldberger residual |I+III-II|, |aVR+aVL+aVF| over the mean RMS of "
                     "I, II, III (large: limb leads mislabelled or a limb lead corrupted)",
    "arm_reversal_hint": "1 when lead I is inverted and aVR upright (likely LA/RA reversal or dextrocardia)",
}
for _metric, _desc in SIGNAL_METRICS.items():
    CATALOG[_metric] = ("signal", "record", "by-threshold", _desc)


def default_thresholds() -> dict[str, Any]:
    """A fresh copy of the packaged defaults."""
    return json.loads(DEFAULTS_PATH.read_text())


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"thresholds file {path} does not exist; pass an existing JSON or TOML file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"thresholds file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}; "
                          "fix the syntax (JSON or TOML by extension)") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"thresholds file {path} must hold a table/object at the top level")
    return data


def _check_value(key: str, default: Any, value: Any, source: str) -> None:
    if value is None:
        return  # null turns a bound or limit off
    if isinstance(default, bool) or isinstance(value, bool):
        if not (isinstance(default, bool) and isinstance(value, bool)):
            raise ConfigError(f"{source}: '{key}' must be {type(default).__name__}, got {value!r}")
    elif isinstance(default, (int, float)) or default is None:
        if default is None and isinstance(value, (list, dict, str)):
            raise ConfigError(f"{source}: '{key}' must be a number or null, got {value!r}")
        if default is not None and not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
    elif isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")


def _merge(base: dict[str, Any], override: Mapping[str, Any], prefix: str, source: str) -> None:
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if prefix == "severity.":
            if key not in CATALOG:
                raise ConfigError(f"{source}: unknown expectation '{key}' in 'severity'; known: "
                                  f"{', '.join(sorted(CATALOG))}")
            if value not in SEVERITIES:
                raise ConfigError(f"{source}: severity of '{key}' must be one of {', '.join(SEVERITIES)}, "
                                  f"got {value!r}")
            base[key] = value
            continue
        if prefix == "signal.metrics." and key in SIGNAL_METRICS and key not in base:
            base[key] = {}
        if key not in base:
            known = ", ".join(sorted(base)) if base else "none"
            raise ConfigError(f"{source}: unknown key '{dotted}' (known at this level: {known}); "
                              "check the spelling against esi/validation/thresholds.json")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{dotted}' must be a table/object, got {value!r}")
            if prefix == "signal.metrics.":
                unknown = [k for k in value if k not in METRIC_BOUNDS]
                if unknown:
                    raise ConfigError(f"{source}: unknown key '{dotted}.{unknown[0]}'; a metric takes "
                                      f"{', '.join(METRIC_BOUNDS)}")
                for k, v in value.items():
                    _check_value(f"{dotted}.{k}", 0.0, v, source)
                    base[key][k] = v
                continue
            _merge(base[key], value, f"{dotted}.", source)
        else:
            _check_value(dotted, base[key], value, source)
            base[key] = copy.deepcopy(value)


def merge_thresholds(base: dict[str, Any], override: Mapping[str, Any], source: str = "thresholds") -> dict:
    """Return ``base`` with ``override`` merged in (nested). Unknown keys raise ConfigError naming the key."""
    out = copy.deepcopy(base)
    _merge(out, override, "", source)
    return out


def load_thresholds(thresholds: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults merged with ``thresholds`` (a JSON/TOML file path or a mapping); None gives the defaults."""
    base = default_thresholds()
    if thresholds is None:
        return base
    if isinstance(thresholds, Mapping):
        return merge_thresholds(base, thresholds, "thresholds override")
    path = Path(thresholds)
    return merge_thresholds(base, _read_file(path), str(path))


def severity_of(name: str, thresholds: Mapping[str, Any]) -> str:
    """Severity of a manifest/dataset expectation: the override in 'severity', else the catalog default."""
    return thresholds.get("severity", {}).get(name, CATALOG[name][2])
