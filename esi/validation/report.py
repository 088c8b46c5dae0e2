"""Human-facing outputs of the validate step: a self-contained HTML page and a one-screen terminal summary."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from esi.validation.validate import ValidationReport

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.ok{color:#17702e}.fail{color:#b00020;font-weight:bold}.warn{color:#a05a00;font-weight:bold}
.verdict{font-size:1.4em;padding:.5em 1em;display:inline-block;border-radius:4px}
.pass{background:#e3f5e8}.failed{background:#fbe3e6}
code{font-size:12px}
"""
_STAT_COLUMNS = ("nan_fraction", "flat_leads", "clipping_fraction", "amplitude_mv", "baseline_offset_mv",
                 "hf_noise_ratio", "limb_residual", "arm_reversal_hint")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _status(row: Mapping[str, Any]) -> str:
    if row["success"]:
        return '<span class="ok">pass</span>'
    cls = "fail" if row["severity"] == "critical" else "warn"
    return f'<span class="{cls}">FAIL</span>'


def render_html(report: ValidationReport, stats: pd.DataFrame, quarantine: pd.DataFrame,
                thresholds: Mapping[str, Any], max_quarantine_rows: int = 500) -> str:
    """A self-contained page: verdict, every expectation with severity/observed/success/examples, the
    quarantine list and a distribution summary of the signal statistics."""
    verdict = "PASSED" if report.passed else "FAILED"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ESI validation: {_e(report.store)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>ESI data validation</h1><p>Store: <code>{_e(report.store)}</code></p>",
             f"<div class='verdict {'pass' if report.passed else 'failed'}'>{verdict}</div>",
             f"<p>{report.n_records} records; {report.n_quarantined} quarantined "
             f"({report.quarantine_fraction:.2%}, limit {report.max_quarantine_fraction:.0%}); "
             f"{len(report.critical_failures)} failure(s) failing the step; "
             f"{len(report.warnings)} warning(s); "
             f"strict={report.strict}; {report.seconds:.1f} s.</p>"]
    parts.append("<p><small>Rules: a failed <i>record</i>-level critical expectation quarantines the failing "
                 "records; the step fails on a failed <i>dataset</i>-level critical expectation or when the "
                 "quarantined share exceeds the limit; warnings are reported only (strict mode makes them "
                 "critical).</small></p>")
    if report.passed and report.quarantined_failures:
        parts.append(f"<p class='fail'>Passed with {report.n_quarantined} record(s) quarantined: these critical "
                     "record-level expectations failed for them (below the quarantine limit):</p><ul>")
        for f in report.quarantined_failures:
            parts.append(f"<li><b>{_e(f.expectation)}</b>: {f.n_records} record(s) quarantined; e.g. "
                         f"{_e(', '.join(f.example_ids))}</li>")
        parts.append("</ul>")
    if report.critical_failures:
        parts.append("<h2>Why the step failed</h2><ul>")
        for f in report.critical_failures:
            parts.append(f"<li><b>{_e(f.expectation)}</b>: {f.n_records} record(s); e.g. "
                         f"{_e(', '.join(f.example_ids))}</li>")
        parts.append("</ul>")
    parts.append("<h2>Expectations</h2><table><tr><th>status</th><th>expectation</th><th>table</th>"
                 "<th>severity</th><th>level</th><th>check</th><th>observed</th><th>records</th>"
                 "<th>failing examples</th></tr>")
    order = {"critical": 0, "warning": 1}
    for row in sorted(report.expectations, key=lambda r: (r["success"], order.get(r["severity"], 2))):
        check = row["description"] + (f" ({row['bound']})" if row["bound"] else "")
        parts.append(
            f"<tr><td>{_status(row)}</td><td><b>{_e(row['name'])}</b><br><code>{_e(row['gx_type'])}</code></td>"
            f"<td>{_e(row['table'])}</td><td>{_e(row['severity'])}</td><td>{_e(row['level'])}</td>"
            f"<td>{_e(check)}<br><code>{_e(row['kwargs'])}</code></td><td>{_e(row['observed'])}</td>"
            f"<td>{row['n_records'] if not row['success'] else 0}</td>"
            f"<td>{_e(', '.join(row['record_ids'][:5]))}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2>Quarantine ({len(quarantine)} records)</h2>")
    if len(quarantine):
        parts.append("<table><tr><th>record_id</th><th>failed expectations</th></tr>")
        for rec in quarantine.head(max_quarantine_rows).itertuples(index=False):
            parts.append(f"<tr><td>{_e(rec.record_id)}</td><td>{_e(rec.failed_expectations)}</td></tr>")
        parts.append("</table>")
        if len(quarantine) > max_quarantine_rows:
            parts.append(f"<p>... {len(quarantine) - max_quarantine_rows} more in quarantine.parquet</p>")
    cols = [c for c in _STAT_COLUMNS if c in stats]
    if len(stats) and cols:
        desc = stats[cols].astype(float).describe(percentiles=[0.5, 0.95, 0.99]).T
        parts.append("<h2>Signal statistics</h2><table><tr><th>metric</th>"
                     + "".join(f"<th>{_e(c)}</th>" for c in desc.columns) + "<th>thresholds</th></tr>")
        metrics = thresholds.get("signal", {}).get("metrics", {})
        for name, rec in desc.iterrows():
            bounds = ", ".join(f"{k}={v}" for k, v in metrics.get(name, {}).items() if v is not None)
            parts.append(f"<tr><td>{_e(name)}</td>" + "".join(f"<td>{v:.4g}</td>" for v in rec.to_numpy())
                         + f"<td>{_e(bounds)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Outputs</h2><ul>" + "".join(f"<li>{_e(k)}: <code>{_e(v)}</code></li>"
                                                  for k, v in report.outputs.items()) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _outcome(row: Mapping[str, Any], failing: set[str], quarantining: set[str]) -> str:
    """What a failed expectation did: failed the step, quarantined its records, or only warned."""
    if row["severity"] != "critical":
        return "warned"
    if row["name"] in failing:
        return "failed the step"
    return "quarantined" if row["name"] in quarantining else "failed"


def print_summary(report: ValidationReport, console: Any | None = None, max_rows: int = 12) -> None:
    """One screen: verdict line, failed expectations (critical first) as a rich table, output paths."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    colour = "green" if report.passed else "red"
    met = sum(r["success"] for r in report.expectations)
    failed = [r for r in report.expectations if not r["success"]]
    # a critical record-level failure that did not fail the step quarantined its records: say so, always
    quarantining = {f.expectation for f in report.quarantined_failures}
    failing = {f.expectation for f in report.critical_failures}
    verdict = "PASSED" if report.passed else "FAILED"
    if report.passed and quarantining:
        verdict += (f" with {report.n_quarantined} record(s) quarantined by {len(quarantining)} critical "
                    "expectation(s) listed below")
    console.print(f"[bold {colour}]{verdict}[/] {report.store}: "
                  f"{report.n_records} records, {report.n_quarantined} quarantined "
                  f"({report.quarantine_fraction:.1%}, limit {report.max_quarantine_fraction:.0%}"
                  f"{', strict' if report.strict else ''}), "
                  f"{met}/{len(report.expectations)} expectations met")
    # a warning bound failed only by records that already fail the critical bound adds nothing here
    critical_ids: dict[str, set[str]] = {}
    for r in failed:
        if r["severity"] == "critical":
            critical_ids.setdefault(r["name"], set()).update(r["record_ids"])
    failed = [r for r in failed if r["severity"] == "critical" or not r["record_ids"]
              or not set(r["record_ids"]) <= critical_ids.get(r["name"], set())]
    if failed:
        table = Table(title="failed expectations", show_lines=False)
        for col in ("expectation", "severity", "outcome", "level", "records", "observed", "examples"):
            table.add_column(col, overflow="fold", no_wrap=col == "expectation")
        failed.sort(key=lambda r: (r["severity"] != "critical", r["level"] != "dataset", r["name"]))
        for r in failed[:max_rows]:
            style = "red" if r["severity"] == "critical" else "yellow"
            table.add_row(f"[{style}]{r['name']}[/]", r["severity"], _outcome(r, failing, quarantining),
                          r["level"], str(r["n_records"]), r["observed"][:70], ", ".join(r["record_ids"][:3]))
        console.print(table)
        if len(failed) > max_rows:
            console.print(f"... {len(failed) - max_rows} more failed expectations in the report")
    for key in ("report_html", "quarantine", "gx_results"):
        if key in report.outputs:
            console.print(f"{key}: {report.outputs[key]}")
