"""Great Expectations suites over three tables of a store: its header, its manifest, its signal statistics.

Every expectation carries ``meta``: ``name`` (the ESI expectation name, see config.CATALOG), ``severity``
(critical | warning), ``level`` (dataset | record) and a description. Great Expectations runs in an
ephemeral context (no files, no network, analytics and progress bars off); each table is a pandas
dataframe asset with a whole-dataframe batch definition.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.validation.config import CATALOG, SIGNAL_METRICS, severity_of

if TYPE_CHECKING:
    import pandas as pd

TABLES = ("header", "manifest", "signal")


@dataclass
class SuiteSpec:
    """One expectation before it becomes a GX object: its class name, keyword arguments and ESI meta."""

    gx_type: str  # class name in great_expectations.expectations
    kwargs: dict[str, Any]
    name: str
    severity: str
    table: str
    bound: str = ""  # for signal metrics: which bounds this expectation enforces

    @property
    def level(self) -> str:
        return CATALOG[self.name][1]

    @property
    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "level": self.level, "table": self.table,
                "description": CATALOG[self.name][3], "bound": self.bound}


# --- the tables -------------------------------------------------------------------------------------------
def header_frame(header: Mapping[str, Any], n_manifest_rows: int) -> pd.DataFrame:
    """The store header as a one-row table."""
    import pandas as pd

    leads = header.get("leads") or []
    return pd.DataFrame([{
        "record_id": "<header>", "fs": header.get("fs"), "n_samples": header.get("n_samples"),
        "leads": ",".join(str(x) for x in leads), "n_leads": len(leads), "n_records": header.get("n_records"),
        "manifest_rows": n_manifest_rows,
    }])


def _sources_with(manifest: pd.DataFrame, column: str, configured: list[str], share: float) -> list[str]:
    """Configured sources plus those where at least ``share`` of the records have ``column`` set."""
    if not len(manifest) or column not in manifest:
        return sorted(set(configured))
    present = manifest[column].notna() & (manifest[column].astype(str).str.strip() != "")
    by_source = present.groupby(manifest["source"].astype(str)).mean()
    return sorted(set(configured) | {s for s, frac in by_source.items() if frac >= share})


def manifest_frame(manifest: pd.DataFrame, header: Mapping[str, Any], thresholds: Mapping[str, Any]
                   ) -> pd.DataFrame:
    """The manifest plus derived columns the manifest suite checks (label counts, duration, padding)."""
    import pandas as pd

    df = manifest.copy()
    for col in ("record_id", "source", "subject_id", "age", "sex", "fold", "label_system", "labels",
                "original_fs", "original_n_samples", "padded_samples"):
        if col not in df:
            df[col] = None
    srcs = thresholds["sources"]
    df["source"] = df["source"].astype(str)
    df["subject_id"] = df["subject_id"].where(df["subject_id"].astype(str).str.strip() != "", None)
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    df["age_recorded"] = df["age"].where(df["age"].notna(), _flagged_ages(df))
    df["fold"] = pd.to_numeric(df["fold"], errors="coerce")

    def _n_labels(text: Any) -> int:
        if text is None or (isinstance(text, float) and np.isnan(text)):
            return 0
        try:
            value = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            return 0
        return len(value) if isinstance(value, (dict, list)) else 0

    df["n_labels"] = df["labels"].map(_n_labels).astype(int)
    df["labelled_source"] = ~df["label_system"].astype(str).isin(srcs["unlabelled_label_systems"])
    folded = _sources_with(df, "fold", srcs["with_folds"], srcs["infer_share"])
    with_subjects = _sources_with(df, "subject_id", srcs["with_subjects"], srcs["infer_share"])
    df["fold_required"] = df["source"].isin(folded)
    df["subject_required"] = df["source"].isin(with_subjects)
    fs = float(header.get("fs") or 0) or np.nan
    n = float(header.get("n_samples") or 0) or np.nan
    ofs = pd.to_numeric(df["original_fs"], errors="coerce")
    on = pd.to_numeric(df["original_n_samples"], errors="coerce")
    padded = pd.to_numeric(df["padded_samples"], errors="coerce")
    df["original_fs"] = ofs
    df["original_duration_s"] = on / ofs
    # Length after resampling to the store rate; a shorter record is zero-padded to the window.
    expected_pad = np.maximum(0.0, n - np.ceil(on * fs / ofs))
    df["padding_mismatch"] = (padded - expected_pad).abs()
    df["padded_fraction"] = padded / n
    return df


def _flagged_ages(df: pd.DataFrame) -> pd.Series:
    """The source's age of records whose age preparation nulled (flag 'age_out_of_range=<value>')."""
    import pandas as pd

    def _age(text: Any) -> float:
        if not isinstance(text, str) or "age_out_of_range=" not in text:
            return np.nan
        try:
            flags = json.loads(text)
        except ValueError:
            return np.nan
        for flag in flags if isinstance(flags, list) else []:
            if isinstance(flag, str) and flag.startswith("age_out_of_range="):
                try:
                    return float(flag.split("=", 1)[1])
                except ValueError:
                    return np.nan
        return np.nan

    if "flags" not in df:
        return pd.Series(np.nan, index=df.index)
    return df["flags"].map(_age).astype(float)


# --- the suites -------------------------------------------------------------------------------------------
def _sev(name: str, thresholds: Mapping[str, Any], strict: bool) -> str:
    sev = severity_of(name, thresholds)
    return "critical" if strict and sev == "warning" else sev


def header_specs(thresholds: Mapping[str, Any], header: Mapping[str, Any], strict: bool = False
                 ) -> list[SuiteSpec]:
    """Expectations on the one-row header table: canonical leads, fs, n_samples, record counts."""
    exp = thresholds["expected"]
    specs = [
        SuiteSpec("ExpectColumnValuesToBeInSet", {"column": "leads", "value_set": [",".join(exp["leads"])]},
                  "header_leads_canonical", _sev("header_leads_canonical", thresholds, strict), "header"),
        SuiteSpec("ExpectColumnValuesToBeInSet", {"column": "fs", "value_set": [exp["fs"]]},
                  "header_fs_expected", _sev("header_fs_expected", thresholds, strict), "header"),
        SuiteSpec("ExpectColumnValuesToBeInSet", {"column": "n_samples", "value_set": [exp["n_samples"]]},
                  "header_n_samples_expected", _sev("header_n_samples_expected", thresholds, strict),
                  "header"),
        SuiteSpec("ExpectColumnPairValuesToBeEqual", {"column_A": "n_records", "column_B": "manifest_rows"},
                  "manifest_matches_header", _sev("manifest_matches_header", thresholds, strict), "header"),
    ]
    return [s for s in specs if s.severity != "off"]


def manifest_specs(thresholds: Mapping[str, Any], strict: bool = False) -> list[SuiteSpec]:
    """Expectations on the manifest table (ids, demographics, folds, labels, subjects, original fields)."""
    from great_expectations.expectations.row_conditions import Column

    m, exp = thresholds["manifest"], thresholds["expected"]

    def spec(gx_type: str, name: str, **kwargs: Any) -> SuiteSpec:
        return SuiteSpec(gx_type, kwargs, name, _sev(name, thresholds, strict), "manifest")

    specs = [
        spec("ExpectColumnValuesToNotBeNull", "record_id_not_null", column="record_id"),
        spec("ExpectColumnValuesToBeUnique", "record_id_unique", column="record_id"),
        spec("ExpectTableRowCountToBeBetween", "row_count_in_range", min_value=exp["min_records"],
             max_value=exp["max_records"]),
        spec("ExpectColumnValuesToBeBetween", "age_in_range", column="age", min_value=m["age_min"],
             max_value=m["age_max"]),
        spec("ExpectColumnValuesToBeBetween", "age_recorded_in_range", column="age_recorded",
             min_value=m["age_min"], max_value=m["age_max"]),
        spec("ExpectColumnValuesToBeInSet", "sex_known", column="sex", value_set=list(m["sex_values"])),
        spec("ExpectColumnValuesToBeBetween", "fold_in_range", column="fold", min_value=m["fold_min"],
             max_value=m["fold_max"]),
        spec("ExpectColumnValuesToNotBeNull", "fold_present", column="fold",
             row_condition=Column("fold_required") == True),  # noqa: E712 - a GX condition, not a Python test
        spec("ExpectColumnValuesToBeBetween", "labels_present", column="n_labels", min_value=1,
             row_condition=Column("labelled_source") == True),  # noqa: E712
        spec("ExpectColumnValuesToNotBeNull", "subject_present", column="subject_id",
             row_condition=Column("subject_required") == True),  # noqa: E712
        spec("ExpectColumnValuesToBeBetween", "original_fs_plausible", column="original_fs",
             min_value=m["original_fs_min"], max_value=m["original_fs_max"]),
        spec("ExpectColumnValuesToBeBetween", "original_duration_sufficient", column="original_duration_s",
             min_value=m["min_duration_s"]),
        spec("ExpectColumnValuesToBeBetween", "padding_consistent", column="padding_mismatch", min_value=0,
             max_value=m["padding_tolerance_samples"]),
        spec("ExpectColumnValuesToBeBetween", "padding_small", column="padded_fraction", min_value=0,
             max_value=m["padded_fraction_max"]),
    ]
    return [s for s in specs if s.severity != "off"]


def signal_specs(thresholds: Mapping[str, Any], header: Mapping[str, Any], strict: bool = False
                 ) -> list[SuiteSpec]:
    """Expectations on the signal-statistics table: array shape, then one or two per metric."""
    specs: list[SuiteSpec] = []
    shape_sev = _sev("signal_shape_matches_header", thresholds, strict)
    if shape_sev != "off":
        shape = f"{len(header.get('leads') or [])}x{header.get('n_samples')}"
        specs.append(SuiteSpec("ExpectColumnValuesToBeInSet", {"column": "shape", "value_set": [shape]},
                               "signal_shape_matches_header", shape_sev, "signal"))
    overrides = thresholds.get("severity", {})
    for metric in SIGNAL_METRICS:
        bounds = thresholds["signal"]["metrics"].get(metric, {})
        forced = overrides.get(metric)
        if forced == "off":
            continue
        for sev in ("critical", "warning"):
            lo, hi = bounds.get(f"{sev}_min"), bounds.get(f"{sev}_max")
            if lo is None and hi is None:
                continue
            severity = forced or sev
            severity = "critical" if strict and severity == "warning" else severity
            bound = " ".join(x for x in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None
                                         else "") if x)
            specs.append(SuiteSpec("ExpectColumnValuesToBeBetween",
                                   {"column": metric, "min_value": lo, "max_value": hi},
                                   metric, severity, "signal", bound=f"{sev} bound: {bound}"))
    return specs


def signal_frame(stats: pd.DataFrame) -> pd.DataFrame:
    """The statistics table plus the 'shape' column the shape expectation reads."""
    df = stats.copy()
    df["shape"] = df["n_leads"].astype(int).astype(str) + "x" + df["n_samples"].astype(int).astype(str)
    return df


# --- running ----------------------------------------------------------------------------------------------
def make_context():
    """An ephemeral GX context with analytics and progress bars off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # GX logs multi-line INFO messages (datasource dumps) that would clutter the one-screen summary.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def build_suite(context: Any, name: str, specs: list[SuiteSpec]):
    """Register an ExpectationSuite made of ``specs`` in ``context``."""
    import great_expectations as gx

    expectations = []
    for s in specs:
        cls = getattr(gx.expectations, s.gx_type)
        expectations.append(cls(**s.kwargs, meta=s.meta))
    return context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))


def run_suites(tables: Mapping[str, pd.DataFrame], specs: Mapping[str, list[SuiteSpec]]) -> dict[str, Any]:
    """Validate each table against its suite. Returns {table: GX ExpectationSuiteValidationResult}."""
    import great_expectations as gx

    context = make_context()
    source = context.data_sources.add_pandas("esi")
    results = {}
    for table, df in tables.items():
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(f"{table}-all")
        suite = build_suite(context, f"esi-{table}", specs[table])
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"esi-{table}", data=batch, suite=suite))
        results[table] = definition.run(
            batch_parameters={"dataframe": df.reset_index(drop=True)},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["record_id"]})
    return results
