"""Writing the comparison: OUT/compare.json, OUT/measurements.parquet, OUT/*.png and OUT/report.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.compare import plots as P
from esi.data.record import LEADS
from esi.data.store import atomic_write_bytes, atomic_write_json, atomic_write_parquet

TOP = 25  # rows of the ranked gap table in report.md (compare.json has every feature)


def fmt(v: Any) -> str:
    """A number with about 3 significant digits ('-' for missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    v = float(v)
    if v == 0:
        return "0"
    mag = abs(v)
    if mag >= 100:
        return f"{v:.0f}"
    if mag >= 0.01:
        return f"{v:.3g}"
    return f"{v:.2e}"


def _summ(s: dict[str, Any]) -> str:
    return f"{fmt(s['median'])} [{fmt(s['q1'])}, {fmt(s['q3'])}]" if s["n"] else "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _gap_rows(gaps: list[dict[str, Any]], top: int) -> list[list[str]]:
    rows = []
    for g in gaps[:top]:
        s, r = g["synthetic"], g["real"]
        rows.append([str(g["rank"]), f"`{g['feature']}`", g["group"], g["unit"] or "-", _summ(s), _summ(r),
                     fmt(g["median_diff"]), fmt(g["w_norm"]), fmt(g["ks"]), f"{s['n']}/{s['n_failed']}",
                     f"{r['n']}/{r['n_failed']}"])
    return rows


GAP_HEAD = ["#", "measurement", "group", "unit", "synthetic median [IQR]", "real median [IQR]",
            "Δ median (syn - real)", "gap W/IQR", "KS", "syn ok/failed", "real ok/failed"]


def _prep_section(prep: dict[str, Any]) -> list[str]:
    if prep["equal"]:
        keys = ", ".join(f"{k}={v}" for k, v in sorted(prep["real"].items()) if k != "leads")
        return ["## Preprocessing", "", f"Both store headers record the same preprocessing ({keys}): the "
                "signals compared below went through identical resampling, filtering and windowing.", ""]
    return ["## Preprocessing", "", f"**WARNING: {prep['warning']}**", ""]


def _ludb_section(ludb: dict[str, Any] | None, figures: dict[str, str]) -> list[str]:
    if not ludb:
        return ["## Can the measurements be trusted? (LUDB)", "",
                "Not run: pass `--ludb tests/fixtures/real_benchmark/ludb` to compare measure.py's PR, QRS and QT "
                "with LUDB's cardiologist delineation.", ""]
    rows = []
    for name in ("pr_ms", "qrs_ms", "qrs_ii_ms", "qt_ms"):
        e = ludb[name]
        rows.append([name, str(e["n_annotated"]), str(e["n_measured"]), str(e["n_failed"]),
                     fmt(e.get("annotated_median_ms")), fmt(e.get("measured_median_ms")), fmt(e.get("mae_ms")),
                     fmt(e.get("bias_ms")), fmt(e.get("p90_abs_ms")), str(e.get("n_off_by_50ms", "-"))])
    return ["## Can the measurements be trusted? (LUDB)", "",
            f"measure.py against LUDB's lead-II cardiologist delineation on {ludb['n_records']} records "
            "(`qrs_ms`: 12-lead spatial onset/offset, as used in the comparison; `qrs_ii_ms`: lead II alone). "
            "A synthetic-vs-real gap smaller than the measurement error of its interval is not evidence.", "",
            *_table(["interval", "annotated", "measured", "failed", "annotated median (ms)",
                     "measured median (ms)", "median abs error (ms)", "bias (ms)", "p90 abs error (ms)",
                     "off by > 50 ms"], rows),
            "", *([f"![LUDB]({figures['ludb']})", ""] if "ludb" in figures else [])]


def _condition_section(conditions: dict[str, Any]) -> list[str]:
    out = ["## Per condition", "",
           "Each condition against the NORM records (conditions only normal ECG / sinus rhythm) of its own set: "
           "the *effect* is the condition's median minus NORM's. A generator that reproduces a condition shows "
           "an effect like the real one.", ""]
    for name, b in conditions.items():
        key = b["key_measure"]
        out += [f"### {name} (synthetic n={b['n']['synthetic']}, real n={b['n']['real']}; "
                f"NORM: synthetic {b['n_norm']['synthetic']}, real {b['n_norm']['real']})", ""]
        if name != "NORM":
            m = b["measures"][key]
            out.append(f"Key measurement `{key}`: synthetic {name} {_summ(m['synthetic'])} vs NORM "
                       f"{_summ(m['synthetic_norm'])} (effect {fmt(m['synthetic_effect'])}); real {name} "
                       f"{_summ(m['real'])} vs NORM {_summ(m['real_norm'])} (effect {fmt(m['real_effect'])}). "
                       f"P wave found: synthetic {fmt(100 * b['p_wave_found']['synthetic'])} %, real "
                       f"{fmt(100 * b['p_wave_found']['real'])} %.")
            out.append("")
        rows = []
        for meas, m in b["measures"].items():
            row = [f"`{meas}`", _summ(m["synthetic"]), _summ(m["real"])]
            if name != "NORM":
                row += [fmt(m["synthetic_effect"]), fmt(m["real_effect"])]
            rows.append(row)
        head = ["measurement", f"synthetic {name}", f"real {name}"]
        if name != "NORM":
            head += ["synthetic effect vs NORM", "real effect vs NORM"]
        out += [*_table(head, rows), ""]
        if b["gaps"]:
            out += [f"Largest synthetic-vs-real gaps within {name}:", "", *_table(GAP_HEAD, _gap_rows(b["gaps"], 5)),
                    ""]
        elif b.get("note"):
            out += [f"_{b['note']}_", ""]
    return out


def _failure_section(result: dict[str, Any]) -> list[str]:
    rows = []
    n = {s: result["stores"][s]["n_measured"] for s in P.COLORS}
    feats = sorted(set(result["failures"]["synthetic"]) | set(result["failures"]["real"]),
                   key=lambda f: (f.count("["), f))
    for f in feats:
        if "[" in f and not f.endswith("[II]"):
            continue  # per-lead failures follow the beat's; lead II stands for the 12
        cells = [f"`{f}`"]
        for s in P.COLORS:
            e = result["failures"][s].get(f, {"n_failed": 0, "reasons": {}})
            top = next(iter(e["reasons"]), "")
            cells.append(f"{e['n_failed']}/{n[s]} ({fmt(100 * e['n_failed'] / max(n[s], 1))} %) {top}")
        rows.append(cells)
    return ["## Failed measurements", "", "Records where a measurement failed are counted here and left out of "
            "that measurement's distribution only (per-lead amplitudes: lead II shown; compare.json has all). "
            "Measurements not listed never failed.", "",
            *_table(["measurement", "synthetic failed (top reason)", "real failed (top reason)"], rows), ""]


def _amplitude_section(result: dict[str, Any], figures: dict[str, str]) -> list[str]:
    q = result["amplitude_quantiles_mv"]
    rows = [[lead, " / ".join(fmt(v) for v in q["synthetic"][lead]), " / ".join(fmt(v) for v in q["real"][lead])]
            for lead in LEADS]
    return ["## Sample amplitude distributions after preprocessing", "",
            "Pooled stored samples per lead, quantiles 1 / 25 / 50 / 75 / 99 % (mV, 0.01 mV bins).", "",
            *_table(["lead", "synthetic", "real"], rows), "",
            *([f"![samples]({figures['samples']})", ""] if "samples" in figures else [])]


def _source_section(result: dict[str, Any]) -> list[str]:
    """Key medians per source: a gap that only one real source shows is that source's, not 'real ECGs'."""
    by = result.get("by_source") or {}
    if not by:
        return []
    cols = next(iter(next(iter(by.values())).values()))["medians"].keys()
    rows = [[s, src, str(v["n"]), *(fmt(v["medians"][c]) for c in cols)] for s, srcs in by.items()
            for src, v in srcs.items()]
    return ["## Medians by source", "", *_table(["set", "source", "n", *(f"`{c}`" for c in cols)], rows), ""]


def render_report(result: dict[str, Any], figures: dict[str, str]) -> str:
    """report.md text from the compare.json content."""
    st = result["stores"]
    lines = ["# Synthetic vs real ECG recordings", "",
             f"- synthetic store: `{st['synthetic']['path']}` ({st['synthetic']['n_measured']} of "
             f"{st['synthetic']['n_records']} records measured)",
             f"- real store: `{st['real']['path']}` ({st['real']['n_measured']} of {st['real']['n_records']} "
             "records measured)",
             f"- {result['records_per_s']:.1f} records/s; measurements from `esi.data.measure` and Welch spectra; "
             "gap = Wasserstein-1 distance in units of the real set's IQR (KS statistic alongside).", "",
             *_prep_section(result["preprocessing"]), *_ludb_section(result.get("ludb"), figures),
             f"## Largest gaps (top {min(TOP, len(result['gaps']))} of {len(result['gaps'])})", "",
             "Sorted by gap; `ok/failed` counts records measured / where the measurement failed. All rows are in "
             "compare.json (`gaps`).", "", *_table(GAP_HEAD, _gap_rows(result["gaps"], TOP)), ""]
    if "gaps" in figures:
        lines += [f"![gaps]({figures['gaps']})", ""]
    grouped = [[f"`{g['measure']}`", g["group"], str(g["n_features"]), fmt(g["median_w_norm"]), f"`{g['worst']}`",
                fmt(g["worst_w_norm"])] for g in result["grouped"]]
    lines += ["## Gaps by measurement (leads pooled)", "",
              *_table(["measurement", "group", "features", "median gap over leads", "worst", "worst gap"], grouped),
              ""]
    lines += _condition_section(result["conditions"])
    if "conditions" in figures:
        lines += [f"![conditions]({figures['conditions']})", ""]
    lines += _source_section(result)
    lines += _amplitude_section(result, figures)
    lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()
                                   if k not in ("gaps", "conditions", "ludb", "samples")] + [""]
    lines += _failure_section(result)
    return "\n".join(lines) + "\n"


def _finite(obj: Any) -> Any:
    """NaN and infinity become null: compare.json stays strict JSON (jq, JavaScript read it)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_outputs(out: Path, result: dict[str, Any], sets: dict[str, dict[str, Any]],
                  masks: dict[str, dict[str, np.ndarray]], *, plots: bool = True) -> None:
    """Write every output file (each atomically; report.md last, so it exists only when all else does)."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    frames = [d["frame"].assign(set=s) for s, d in sets.items()]
    atomic_write_parquet(out / "measurements.parquet", pd.concat(frames, ignore_index=True))
    figures: dict[str, str] = {}
    if plots:
        figures["gaps"] = P.plot_gaps(result["gaps"], out / "gaps.png")
        figures["distributions"] = P.plot_distributions(sets, out / "distributions.png")
        figures["lead_amplitudes"] = P.plot_lead_amplitudes(sets, out / "lead_amplitudes.png")
        figures["samples"] = P.plot_sample_hist(sets, out / "amplitude_hist.png")
        figures["psd"] = P.plot_psd(sets, out / "psd.png")
        keys = {name: b["key_measure"] for name, b in result["conditions"].items()}
        figures["conditions"] = P.plot_conditions(sets, masks, keys, out / "conditions.png")
        if result.get("ludb"):
            figures["ludb"] = P.plot_ludb(result["ludb"], out / "ludb.png")
    for stale in P.PLOT_FILES:  # a figure of an earlier run must not pass for this one's
        if stale not in figures.values():
            (out / stale).unlink(missing_ok=True)
    result["figures"] = figures
    atomic_write_json(out / "compare.json", _finite(result))
    atomic_write_bytes(out / "report.md", render_report(result, figures).encode())
