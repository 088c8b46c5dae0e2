"""The validate step: statistics -> GX suites -> verdict, quarantine list, JSON/HTML reports.

Verdict rules (also in esi/validation/__init__.py):

* A failed **record-level critical** expectation quarantines the failing records (they stay in the store and
  are listed with the expectations they failed; EcgStore.indices and EcgStoreDataset skip them).
* The step **fails** when a **dataset-level critical** expectation fails (header leads/fs/n_samples, duplicate
  or missing ids, row counts, array shapes), or when the quarantined share of records exceeds
  ``quarantine.max_fraction`` (default 10 %): then every record-level critical failure is listed too.
* Warnings are reported and never fail the step or quarantine.
* ``strict=True`` counts warnings as critical and sets the quarantine limit to 0: any critical failure, on
  any record, fails the step (the failing records are still listed in the quarantine).
* An empty store (0 records) is not validated: StoreError says so (the CLI exits 2).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from esi.data.store import EcgStore, atomic_write_bytes, atomic_write_json, atomic_write_parquet
from esi.errors import ValidationFailed
from esi.validation.config import load_thresholds

log = logging.getLogger(__name__)
N_EXAMPLES = 5
QUARANTINE_RULE = "quarantine_share_within_limit"


class Failure(NamedTuple):
    """One failed expectation: its ESI name, how many records failed it and a few of their ids."""

    expectation: str
    n_records: int
    example_ids: list[str]


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_store`.

    ``critical_failures`` are the failures that fail the step; ``quarantined_failures`` the record-level
    critical failures whose records were quarantined; ``warnings`` the failed warning-level expectations.
    ``expectations`` has one row per evaluated expectation (name, table, severity, level, success,
    observed, unexpected count, examples). ``outputs`` maps gx_results/report_html/quarantine/
    store_quarantine/summary/statistics to their paths.
    """

    passed: bool
    critical_failures: list[Failure]
    warnings: list[Failure]
    n_records: int
    n_quarantined: int
    quarantined_failures: list[Failure] = field(default_factory=list)
    quarantine_fraction: float = 0.0
    max_quarantine_fraction: float = 0.1
    strict: bool = False
    store: str = ""
    seconds: float = 0.0
    expectations: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def message(self, max_items: int = 10) -> str:
        """Human-readable verdict: which critical expectations failed, how many records, example ids."""
        if self.passed:
            text = f"validation passed: {self.n_records} records"
            if self.n_quarantined:
                text += (f", {self.n_quarantined} quarantined ({self.quarantine_fraction:.1%}, limit "
                         f"{self.max_quarantine_fraction:.0%})")
            return text + (f", {len(self.warnings)} warning(s)" if self.warnings else "")
        lines = [f"validation FAILED for {self.store}: {len(self.critical_failures)} critical expectation(s) "
                 "failed"]
        for f in self.critical_failures[:max_items]:
            ids = ", ".join(f.example_ids[:N_EXAMPLES])
            what = (f"{f.n_records} record(s) quarantined = {self.quarantine_fraction:.1%} of "
                    f"{self.n_records}, above the {self.max_quarantine_fraction:.0%} limit"
                    if f.expectation == QUARANTINE_RULE else f"{f.n_records} record(s)")
            lines.append(f"  - {f.expectation}: {what}" + (f", e.g. {ids}" if ids else ""))
        if len(self.critical_failures) > max_items:
            lines.append(f"  ... and {len(self.critical_failures) - max_items} more (see the report)")
        if self.outputs.get("report_html"):
            lines.append(f"report: {self.outputs['report_html']}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise ValidationFailed (with :meth:`message`) when the step failed."""
        if not self.passed:
            raise ValidationFailed(self.message())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("critical_failures", "warnings", "quarantined_failures"):
            d[key] = [f._asdict() for f in getattr(self, key)]
        return d


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    text = json.dumps(value, default=_jsonable) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _interpret(table: str, result: Any, header_ids: list[str], n_rows: int) -> dict[str, Any]:
    """One GX expectation result -> a flat row with ESI meta, observation and failing record ids."""
    cfg = result.expectation_config
    meta = dict(cfg.meta or {})
    res = result.result or {}
    exc = result.exception_info or {}
    raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
    ids: list[str] = []
    for item in res.get("unexpected_index_list") or []:
        rid = item.get("record_id") if isinstance(item, dict) else item
        ids.append(str(rid))
    n_unexpected = int(res.get("unexpected_count") or 0)
    if "observed_value" in res:
        observed = _short(res["observed_value"])
    elif n_unexpected:
        values = list(dict.fromkeys(_short(v, 40) for v in (res.get("partial_unexpected_list") or [])))
        observed = f"{n_unexpected}/{res.get('element_count')} bad: " + ", ".join(values[:N_EXAMPLES])
    else:
        observed = f"0/{res.get('element_count', 0)} bad"
    if table == "header" and not result.success:
        ids = list(header_ids)  # a header failure concerns every record of the store
        n_records = n_rows
    else:
        n_records = len(ids) if ids else (n_unexpected if n_unexpected else (0 if result.success else n_rows))
    if raised:
        observed = f"error: {exc.get('exception_message')}"
    skip = ("batch_id", "row_condition", "condition_parser")
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in skip}
    return {
        "name": meta.get("name", cfg.type), "table": table, "severity": meta.get("severity", "critical"),
        # a check that could not run says nothing about single records: it fails as a dataset-level check
        "level": "dataset" if raised else meta.get("level", "dataset"),
        "description": meta.get("description", ""),
        "bound": meta.get("bound", ""), "gx_type": cfg.type, "kwargs": _short(kwargs, 300),
        "success": bool(result.success) and not raised, "observed": observed, "n_records": n_records,
        "record_ids": ids,
    }


def _merge_failures(rows: list[dict[str, Any]]) -> list[Failure]:
    """Failures per expectation name (a metric with two bounds of one severity is reported once)."""
    merged: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for r in rows:
        ids = merged.setdefault(r["name"], [])
        seen = set(ids)
        ids.extend(i for i in r["record_ids"] if i not in seen)
        counts[r["name"]] = max(counts.get(r["name"], 0), r["n_records"], len(ids))
    return [Failure(name, counts[name], ids[:N_EXAMPLES]) for name, ids in merged.items()]


def validate_store(store_path: str | Path, report_dir: str | Path, *,
                   thresholds: str | Path | Mapping[str, Any] | None = None, strict: bool = False,
                   write_quarantine: bool = True, progress: bool = True, batch_size: int = 256
                   ) -> ValidationReport:
    """Validate a store; write gx_results.json, report.html, quarantine.parquet, summary.json and
    signal_stats.parquet into ``report_dir`` and (``write_quarantine``) STORE/quarantine.parquet.

    Args:
        store_path: the store folder.
        report_dir: folder for the reports (created).
        thresholds: a JSON/TOML override file or a mapping merged over esi/validation/thresholds.json.
        strict: warnings count as critical.
        write_quarantine: also write the quarantine list into the store (later steps honour it).
        progress: show a progress bar over the signal statistics pass.
        batch_size: records per batch of the statistics pass (bounds memory).
    """
    import pandas as pd

    from esi.validation.report import render_html
    from esi.validation.signal_stats import signal_statistics
    from esi.validation.suites import (
        header_frame,
        header_specs,
        manifest_frame,
        manifest_specs,
        run_suites,
        signal_frame,
        signal_specs,
    )

    t0 = time.perf_counter()
    cfg = load_thresholds(thresholds)
    store = EcgStore(store_path)
    store.require_records("validation")
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    manifest = store.manifest
    header = store.header

    sig_cfg = cfg["signal"]
    clip = sig_cfg["metrics"].get("clipping_fraction", {})
    params = {k: v for k, v in sig_cfg.items() if k != "metrics"}
    params["clip_lead_fraction"] = clip.get("warning_max") or clip.get("critical_max") or 0.005
    stats = signal_statistics(store, batch_size=batch_size, progress=progress, params=params)

    tables = {"header": header_frame(header, len(manifest)),
              "manifest": manifest_frame(manifest, header, cfg), "signal": signal_frame(stats)}
    specs = {"header": header_specs(cfg, header, strict), "manifest": manifest_specs(cfg, strict),
             "signal": signal_specs(cfg, header, strict)}
    results = run_suites(tables, specs)

    all_ids = manifest["record_id"].astype(str).tolist()
    rows = []
    for table, result in results.items():
        for r in result.results:
            rows.append(_interpret(table, r, all_ids[:N_EXAMPLES], len(manifest)))
    failed = [r for r in rows if not r["success"]]
    crit_dataset = [r for r in failed if r["severity"] == "critical" and r["level"] == "dataset"]
    crit_record = [r for r in failed if r["severity"] == "critical" and r["level"] == "record"]
    warn = [r for r in failed if r["severity"] != "critical"]

    # Quarantine: records failing a critical record-level expectation, plus rows a critical dataset-level
    # expectation singles out (duplicate ids); header failures concern all records and fail the step instead.
    reasons: dict[str, list[str]] = {}
    for r in crit_record + [r for r in crit_dataset if r["table"] != "header"]:
        for rid in r["record_ids"]:
            names = reasons.setdefault(rid, [])
            if r["name"] not in names:
                names.append(r["name"])
    quarantine = pd.DataFrame({"record_id": list(reasons),
                               "failed_expectations": [",".join(v) for v in reasons.values()],
                               "n_failed": [len(v) for v in reasons.values()]})
    quarantine = quarantine.astype({"record_id": str, "failed_expectations": str, "n_failed": int})
    n_records = len(manifest)
    n_quarantined = int(manifest["record_id"].astype(str).isin(list(reasons)).sum())
    fraction = n_quarantined / n_records if n_records else 0.0
    # strict: a quarantine limit of 0, so a single record failing a critical expectation fails the step
    max_fraction = 0.0 if strict else float(cfg["quarantine"]["max_fraction"])

    critical = _merge_failures(crit_dataset)
    quarantined_failures = _merge_failures(crit_record)
    # A record already failing the critical bound of a metric is not repeated under its warning bound.
    crit_ids: dict[str, set[str]] = {}
    for r in crit_dataset + crit_record:
        crit_ids.setdefault(r["name"], set()).update(r["record_ids"])
    warn = [dict(r, record_ids=kept, n_records=len(kept)) if r["record_ids"] else r for r in warn
            for kept in [[i for i in r["record_ids"] if i not in crit_ids.get(r["name"], set())]]
            if kept or not r["record_ids"]]
    if fraction > max_fraction:
        ids = quarantine["record_id"].head(N_EXAMPLES).tolist()
        critical = [Failure(QUARANTINE_RULE, n_quarantined, ids), *critical, *quarantined_failures]
    report = ValidationReport(
        passed=not critical, critical_failures=critical, warnings=_merge_failures(warn), n_records=n_records,
        n_quarantined=n_quarantined, quarantined_failures=quarantined_failures, quarantine_fraction=fraction,
        max_quarantine_fraction=max_fraction, strict=strict, store=str(store.path), expectations=rows)

    outputs = {"gx_results": report_dir / "gx_results.json", "report_html": report_dir / "report.html",
               "quarantine": report_dir / "quarantine.parquet", "summary": report_dir / "summary.json",
               "statistics": report_dir / "signal_stats.parquet"}
    if write_quarantine:
        outputs["store_quarantine"] = store.quarantine_path
    report.outputs = {k: str(v) for k, v in outputs.items()}
    gx_json = {table: result.to_json_dict() for table, result in results.items()}
    atomic_write_bytes(outputs["gx_results"], json.dumps(gx_json, indent=1, default=_jsonable).encode())
    atomic_write_parquet(outputs["quarantine"], quarantine)
    if write_quarantine:
        # Always rewritten (possibly empty) so a quarantine from an earlier run never outlives its cause.
        atomic_write_parquet(store.quarantine_path, quarantine)
    atomic_write_parquet(outputs["statistics"], stats)
    report.seconds = time.perf_counter() - t0
    atomic_write_bytes(outputs["report_html"], render_html(report, stats, quarantine, cfg).encode())
    atomic_write_json(outputs["summary"], report.to_dict() | {"expectations": [
        {k: v for k, v in r.items() if k != "record_ids"} | {"example_ids": r["record_ids"][:N_EXAMPLES]}
        for r in rows]})
    log.info("validated %d records in %.1f s: %s, %d quarantined, %d warning(s)", n_records, report.seconds,
             "passed" if report.passed else "FAILED", n_quarantined, len(report.warnings))
    return report
