"""Report tables shaped like the paper's Tables 2-5, built from the metrics.json of one or several runs.

- Table 2: arrhythmia macro AUC; rows are methods and modes (random init + linear probe, pretrained model +
  linear probe, fine-tune, supervised from scratch), columns are datasets (benchmark / task).
- Table 3: zero-shot AUC and F1-macro, with the label-fraction linear probes beside it.
- Table 4: 1-shot identification AUC and ACC (and the subject count) per dataset.
- Table 5: ablations: the zero-shot prompt schemes of every run, and the runs of ``esi ablate``.

Method names say what was evaluated: "random init (esi_test)", "pretrained model.pt [1a2b3c4d]". Footnotes
carry skipped classes, fold sizes, contamination status and overrides. ``paper=True`` appends the published
figures (:mod:`esi.evaluation.paper`) in tables of their own, titled as published: never in measured cells.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from esi.errors import EvaluationError


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}"


def _ci(ci: Any) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""


def model_label(info: dict) -> str:
    """What was evaluated, in words: 'random init (esi_test)', 'pretrained model.pt [1a2b3c4d]'."""
    digest = str(info.get("digest", ""))[:8]
    arch = (info.get("config") or {}).get("name", "")
    kind = info.get("kind")
    if kind == "random-init":
        return f"random init ({info.get('ref')})"
    if kind == "checkpoint":
        return f"pretrained {Path(str(info.get('ref'))).name} [{digest}]"
    if kind in ("mlflow", "registry"):
        return f"{info.get('ref')} [{digest}]"
    return f"in-memory {arch or 'model'} [{digest}]"


def dataset_label(metrics: dict) -> str:
    b = metrics["benchmark"]
    return f"{b['benchmark']} / {b['task']}"


class _Table:
    """Cells keyed by (row, column), rows and columns in first-seen order, numbered footnotes."""

    def __init__(self, title: str, corner: str) -> None:
        self.title, self.corner = title, corner
        self.rows: list[str] = []
        self.cols: list[str] = []
        self.cells: dict[tuple[str, str], str] = {}
        self.notes: list[str] = []

    def note(self, text: str) -> str:
        if text not in self.notes:
            self.notes.append(text)
        return f" [{self.notes.index(text) + 1}]"

    def put(self, row: str, col: str, text: str) -> None:
        if row not in self.rows:
            self.rows.append(row)
        if col not in self.cols:
            self.cols.append(col)
        self.cells[(row, col)] = text

    def render(self) -> list[str]:
        if not self.rows:
            return []
        out = [f"### {self.title}", "", f"| {self.corner} | " + " | ".join(self.cols) + " |",
               "| --- | " + " | ".join("---" for _ in self.cols) + " |"]
        for r in self.rows:
            out.append(f"| {r} | " + " | ".join(self.cells.get((r, c), "-") for c in self.cols) + " |")
        out.append("")
        out += [f"[{i}] {n}" for i, n in enumerate(self.notes, start=1)]
        return out + ([""] if self.notes else [])


def _auc_cell(table: _Table, m: dict, where: str) -> str:
    text = _f(m.get("macro_auc")) + _ci(m.get("ci95"))
    if m.get("skipped_classes"):
        text += table.note(f"{where}: class(es) {', '.join(m['skipped_classes'])} have a single label value in "
                           "the test split and are not in the macro AUC")
    if m.get("unfitted_classes"):
        text += table.note(f"{where}: class(es) {', '.join(m['unfitted_classes'])} have one label value in the "
                           "training subset and are scored at chance")
    return text


def _full_fraction(lp: dict) -> dict | None:
    fr = lp.get("fractions") or {}
    return max(fr.values(), key=lambda v: v["fraction"]) if fr else None


def build_tables(runs: Sequence[dict], ablations: dict[str, dict] | None = None) -> list[_Table]:
    """Tables 2-5 from the metrics dicts of evaluation runs (+ an optional {ablation: metrics} mapping)."""
    t2 = _Table("Table 2. Arrhythmia classification: test macro AUC [95% CI]", "Method")
    t3 = _Table("Table 3. Zero-shot and few-label classification: test macro AUC [95% CI] / F1-macro",
                "Method (training labels)")
    t4 = _Table("Table 4. 1-shot subject identification: AUC / top-1 ACC (subjects)", "Method")
    t5 = _Table("Table 5. Ablations: test macro AUC", "Variant")
    for m in runs:
        ds, who, modes = dataset_label(m), model_label(m["model"]), m["modes"]
        arch = (m["model"].get("config") or {}).get("name", "same architecture")
        lp, rnd = modes.get("linear_probe"), modes.get("linear_probe_random_init")
        if rnd and _full_fraction(rnd):
            t2.put(f"random init ({arch}), linear probe", ds, _auc_cell(t2, _full_fraction(rnd), ds))
        if lp and _full_fraction(lp):
            t2.put(f"{who}, linear probe", ds, _auc_cell(t2, _full_fraction(lp), ds))
        if modes.get("finetune"):
            t2.put(f"{who}, fine-tune", ds, _auc_cell(t2, modes["finetune"], ds))
        if modes.get("supervised_scratch"):
            s = modes["supervised_scratch"]
            lr = f", lr {s['lr']:g} of {', '.join(s.get('val_auc_by_lr', {}))} on validation" if "lr" in s else ""
            t2.put(f"supervised from scratch ({arch}{lr})", ds, _auc_cell(t2, s, ds))
        if modes.get("zero_shot"):
            z = modes["zero_shot"]
            row = f"{who}, zero-shot ({z.get('prompt_scheme', 'names')} prompts) (0%)"
            t3.put(row, f"{ds} AUC", _auc_cell(t3, z, ds))
            t3.put(row, f"{ds} F1", _f(z.get("f1_macro")))
            for name, sch in (z.get("schemes") or {}).items():
                t5.put(f"{who}, zero-shot, {name} prompts", f"{ds} zero-shot", _auc_cell(t5, sch, ds))
            for rule, r in (z.get("score_rules") or {}).items():
                t5.put(f"{who}, zero-shot, {z.get('prompt_scheme', 'names')} prompts, {rule} score", f"{ds} zero-shot",
                       _auc_cell(t5, r, ds))
        for key, title in (("linear_probe", who), ("linear_probe_random_init", f"random init ({arch})")):
            for frac in (modes.get(key) or {}).get("fractions", {}).values():
                row = f"{title}, linear probe ({frac['fraction'] * 100:g}%)"
                std = f" ± {frac['macro_auc_std']:.3f}" if frac["fraction"] < 1 and frac.get("macro_auc_std") else ""
                t3.put(row, f"{ds} AUC", _auc_cell(t3, frac, ds) + std)
                t3.put(row, f"{ds} F1", _f(frac.get("f1_macro")))
        if modes.get("identification"):
            i = modes["identification"]
            t4.put(f"{who} ({i['pairing']} pairing, {i['segment_s']:g} s)", m["benchmark"]["benchmark"],
                   f"{_f(i['macro_auc'])} / {_f(i['top1_accuracy'])} ({i['n_subjects']})"
                   + t4.note(f"{m['benchmark']['benchmark']}: pool = all {i.get('pool_records', '?')} test-fold "
                             f"records; chance ACC {_f(i['chance_accuracy'], 4)}"))
        for t in (t2, t3, t4, t5):
            if t.rows:
                _run_notes(t, m, ds)
    for name, m in (ablations or {}).items():
        ds = dataset_label(m)
        lp = _full_fraction(m["modes"].get("linear_probe") or {})
        if lp:
            t5.put(f"ablation {name}", f"{ds} linear probe", _auc_cell(t5, lp, ds))
        if m["modes"].get("zero_shot"):
            t5.put(f"ablation {name}", f"{ds} zero-shot", _auc_cell(t5, m["modes"]["zero_shot"], ds))
        if m["modes"].get("identification"):
            t5.put(f"ablation {name}", f"{ds} identification", _f(m["modes"]["identification"]["macro_auc"]))
    return [t2, t3, t4, t5]


def _run_notes(t: _Table, m: dict, ds: str) -> None:
    """Fold sizes, provenance and overrides of a run that has a cell in ``t``."""
    if not any(c.startswith(ds) or c == m["benchmark"]["benchmark"] for c in t.cols):
        return
    b = m["benchmark"]
    if b.get("fold_sizes"):
        rule = "hash of the subject id (fixed by the data)" if b.get("fold_rule") == "hash" else "the store's folds"
        sizes = ", ".join(f"{k}: {v}" for k, v in b["fold_sizes"].items())
        t.note(f"{ds}: folds from {rule}; records per fold {sizes}; train/val/test "
               f"{b['records']['train']}/{b['records']['val']}/{b['records']['test']}")
    if b.get("dropped_classes"):
        t.note(f"{ds}: class(es) without positives in the store, not evaluated: {', '.join(b['dropped_classes'])}")
    c = m.get("contamination") or {}
    if c.get("allowed_overlap"):
        t.note(f"{ds}: CONTAMINATED: {c['overlap']} of {c['n_test']} test records were in the pretraining set "
               "(run with --allow-contaminated)")
    elif c.get("status") and c["status"] != "known":
        t.note(f"{ds}: test-fold contamination not checked ({c['status']}: {c.get('note', '')})")


def published_tables() -> list[str]:
    """The paper's Tables 2-5, labelled as published (never measured here)."""
    from esi.evaluation import paper

    head = f"## Published figures (not measured here): {paper.SOURCE}"
    out = [head, "", "### Published Table 2: macro AUC", "", "| Group | Method | PTB-XL | ICBEB |",
           "| --- | --- | --- | --- |"]
    for group, rows in paper.TABLE2.items():
        out += [f"| {group} | {k} | {_f(a)} | {_f(b)} |" for k, (a, b) in rows.items()]
    out += ["", "### Published Table 3: PTB-XL zero-shot", "", "| Method | Training labels | AUC | F1-macro |",
            "| --- | --- | --- | --- |"]
    out += [f"| {k} | {lab} | {_f(a)} | {_f(f)} |" for k, (lab, a, f) in paper.TABLE3.items()]
    out += ["", "### Published Table 4: 1-shot identification", "",
            "| Group | Method | PTB-XL AUC | PTB-XL ACC | ICBEB AUC | ICBEB ACC |",
            "| --- | --- | --- | --- | --- | --- |"]
    for group, rows in paper.TABLE4.items():
        out += [f"| {group} | {k} | {_f(p[0])} | {_f(p[1])} | {_f(i[0])} | {_f(i[1])} |" for k, (p, i) in rows.items()]
    out += ["", "### Published Table 5: ablations (ESI-tiny, linear probe, PTB-XL AUC)", "",
            "| Variant | Arrhythmia | Identification |", "| --- | --- | --- |"]
    out += [f"| {k} | {_f(a)} | {_f(b)} |" for k, (a, b) in paper.TABLE5.items()]
    return out + [""]


def render(runs: Sequence[dict], ablations: dict[str, dict] | None = None, *, paper: bool = False) -> str:
    """The measured tables (and, with ``paper``, the published ones after them) as Markdown."""
    lines = ["## Measured", ""]
    for m in runs:
        c = m.get("contamination") or {}
        lines.append(f"- {dataset_label(m)}: {model_label(m['model'])} (`{m['model'].get('ref')}`); "
                     f"pretraining records: {c.get('status', 'unknown')}"
                     + (f", overlap with test {c['overlap']}" if c.get("overlap") is not None else ""))
    lines.append("")
    for t in build_tables(runs, ablations):
        lines += t.render()
    if paper:
        lines += published_tables()
    return "\n".join(lines) + "\n"


def load_runs(paths: Sequence[str | Path]) -> tuple[list[dict], dict[str, dict]]:
    """metrics.json of each path (a run folder, the file itself, or an ``esi ablate`` folder)."""
    runs: list[dict] = []
    ablations: dict[str, dict] = {}
    for p in map(Path, paths):
        if p.is_dir() and (p / "ablations.json").exists():
            for name, entry in json.loads((p / "ablations.json").read_text()).items():
                ablations[name] = _read(Path(entry["report"]) / "metrics.json")
            continue
        runs.append(_read(p if p.is_file() else p / "metrics.json"))
    return runs, ablations


def _read(path: Path) -> dict:
    if not path.exists():
        raise EvaluationError(f"{path} does not exist; pass evaluation run folders (with metrics.json, written by "
                              "'esi evaluate') or an 'esi ablate' output folder (with ablations.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path} is not valid JSON ({exc}); re-run the evaluation") from exc
    if not isinstance(data, dict) or "modes" not in data or "benchmark" not in data:
        raise EvaluationError(f"{path} is not an evaluation metrics.json (no 'modes'/'benchmark'); "
                              "pass the folder 'esi evaluate' wrote")
    return data
