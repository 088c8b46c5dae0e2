"""The small glue each Kubeflow component needs around its stage function, kept here so it is tested code.

A component (components/<stage>/component.py) runs in its own process (a pod on a cluster, a subprocess under
kfp.local). It calls :func:`init_step` first (environment: ESI_HOME, MLflow, LLM/embedding endpoints), then the
stage function of esi, then writes what it made to its output artifacts. Big outputs (the store, the knowledge
base, checkpoints) stay in the work root, a folder on the shared volume (the PVC on a cluster); artifacts carry
their location and counts as metadata, plus the reports themselves (HTML, Markdown, metrics).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path
from typing import Any

from esi.errors import ConfigError

SYNTHETIC = "synthetic"


def layout(work_root: str | Path) -> dict[str, Path]:
    """Where every stage writes inside the work root: the same tree as ``esi run --out``."""
    from esi.pipeline.local import _paths

    root = Path(work_root)
    p = _paths(root)
    p.setdefault("score", root / "scores")
    p["root"] = root
    return p


def init_step(work_root: str | Path, *, mlflow_tracking_uri: str = "", llm: str = "", llm_model: str = "",
              llm_base_url: str = "", embeddings: str = "", embedding_model: str = "") -> dict[str, Path]:
    """Prepare the process of one pipeline step and return the work-root layout.

    Empty strings keep the settings' defaults. ESI_HOME defaults to WORK_ROOT/home when the environment does
    not set it (on a cluster, the PVC), so MLflow's SQLite store and the caption cache are shared by steps.
    The API key is never a parameter: it comes from the environment (a Kubernetes Secret on a cluster).
    """
    if not str(work_root):
        raise ConfigError("work_root is empty: pass the shared folder of the run (a path on the PVC on a cluster)")
    root = Path(work_root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ESI_HOME", str(root / "home"))
    for var, value in (("MLFLOW_TRACKING_URI", mlflow_tracking_uri), ("ESI_LLM", llm), ("ESI_LLM_MODEL", llm_model),
                       ("OPENAI_BASE_URL", llm_base_url), ("ESI_EMBEDDINGS", embeddings),
                       ("ESI_EMBEDDING_MODEL", embedding_model)):
        if value:
            os.environ[var] = value
    from esi.settings import get_settings

    get_settings.cache_clear()
    get_settings()  # validates the values above and applies the offline environment
    return layout(root)


def source_root_of(source: str, root: str, work_root: str | Path) -> tuple[str, Path]:
    """The (reader, folder) a run prepares: the synthetic generator writes PTB-XL layout into the work root."""
    if source == SYNTHETIC:
        return "ptbxl", layout(work_root)["synth"]
    if not root:
        raise ConfigError(f"source {source!r} needs source_root (the dataset folder); or use source=synthetic")
    return source, Path(root)


def plan_prepare(source: str, root: str, work_root: str | Path, *, shard_size: int, subjects: int = 0,
                 records_per_subject: int = 0, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Generate the synthetic set when asked, then count the records: one prepare task per shard."""
    from esi.data.readers import get_reader

    if shard_size < 1:
        raise ConfigError(f"shard_size={shard_size}: expected at least 1 record per shard")
    reader, folder = source_root_of(source, root, work_root)
    if source == SYNTHETIC:
        from esi.data.synthetic import generate_dataset

        generate_dataset(folder, subjects=subjects, records_per_subject=records_per_subject, seed=seed,
                         progress=progress)
    n_records = len(get_reader(reader).list_refs(folder))
    n_shards = max(1, -(-n_records // shard_size))
    return {"reader": reader, "root": str(folder), "records": n_records,
            "shards": [f"{k}/{n_shards}" for k in range(n_shards)]}


CAPTION_PARTS = {"main": "caption", "real": "real_captions"}  # caption part -> its layout key


def captions_out(work_root: str | Path, part: str = "main") -> Path:
    """Where the caption step of PART writes: the run's store (main) or the real-ECG benchmark store (real)."""
    if part not in CAPTION_PARTS:
        raise ConfigError(f"caption part={part!r}; known: {', '.join(CAPTION_PARTS)} (main: the run's store, "
                          "real: the real-ECG benchmark store)")
    return layout(work_root)[CAPTION_PARTS[part]]


def prepare_real_store(work_root: str | Path, *, enabled: bool = True, progress: bool = False) -> dict[str, Any]:
    """Prepare the shipped real-ECG benchmark records (esi.data.real_split.REAL_ROOT, source wfdb) into
    WORK_ROOT/real_store, as ``esi run`` does; returns the store artifact's metadata (path '' when disabled:
    the later real steps then skip, so one pipeline graph serves real_benchmark on and off)."""
    if not enabled:
        return {"path": "", "records": 0, "skipped": "real_benchmark=False"}
    from esi.data.prepare import prepare
    from esi.data.real_split import REAL_ROOT

    if not REAL_ROOT.is_dir():
        raise ConfigError(f"the real-ECG benchmark records are not at {REAL_ROOT}: run from a source checkout (or "
                          "the project image, which ships tests/fixtures/real_benchmark), or set real_benchmark=False")
    out = layout(work_root)["real_store"]
    s = prepare("wfdb", REAL_ROOT, out, progress=progress)
    return {"path": str(out), "source_root": str(REAL_ROOT), "records": s.windows_written, "rejected": s.rejected}


def real_mix(store_meta: dict[str, Any] | None, captions_meta: dict[str, Any] | None,
             enabled: bool = True) -> list[dict[str, str]]:
    """The PretrainConfig.mix of a pipeline run: the captioned real benchmark store when MIX_REAL is on and the
    real steps produced one (its evaluation part is left out by the training data itself)."""
    store, captions = (store_meta or {}).get("path"), (captions_meta or {}).get("path")
    if not (enabled and store and captions):
        return []
    return [{"store": str(store), "captions": str(captions)}]


def evaluation_folders(*metas: dict[str, Any] | None) -> list[str]:
    """The evaluation folders to register: every evaluation artifact that names one (a skipped real-benchmark
    evaluation names none; a named folder without metrics.json is the registry's error, not dropped here)."""
    return [str(m["path"]) for m in metas if m and m.get("path")]


def parse_shard(text: str) -> tuple[int, int]:
    """'1/3' -> (1, 3): shard 1 (0-based) of 3, as esi.data.prepare takes it."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def score_shards(requested: int) -> list[int]:
    """Shard indices 1..n (1-based, the contract of esi.serving.score) for ``requested`` scoring tasks."""
    if requested < 1:
        raise ConfigError(f"score_shards={requested}: expected at least 1")
    return list(range(1, requested + 1))


def write_json(path: str | Path, payload: Any) -> None:
    """An artifact's file: JSON (its metadata repeats the important fields for the UI)."""
    from esi.data.store import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path), payload)


def copy_file(src: str | Path, dst: str | Path) -> None:
    """Copy a report into an artifact path (the artifact store keeps it after the PVC is gone)."""
    from esi.data.store import atomic_write_bytes

    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(dst), Path(src).read_bytes())


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric values of a flat metrics dict (what a KFP Metrics artifact can hold)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if v == v and abs(v) != float("inf"):
            out[k] = float(v)
    return out


def parse_gates(text: str) -> list[str] | None:
    """'zero_shot_auroc>=0.6, identification_top1>=0.2' -> a list; '' -> None (the settings' gates)."""
    items = [g.strip() for g in (text or "").split(",") if g.strip()]
    return items or None


_IMG = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str, base: Path) -> str:
    def image(m: re.Match[str]) -> str:
        src = base / m.group(2)
        if src.is_file():  # embedded, so the HTML artifact is one self-contained file
            data = base64.b64encode(src.read_bytes()).decode()
            return f'<img alt="{html.escape(m.group(1))}" src="data:image/png;base64,{data}">'
        return html.escape(m.group(0))

    parts = _IMG.split(text)
    out = []
    for i in range(0, len(parts), 3):
        chunk = html.escape(parts[i])
        chunk = _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<b>\1</b>", chunk))
        out.append(chunk)
        if i + 2 < len(parts):
            out.append(image(_IMG.match(f"![{parts[i + 1]}]({parts[i + 2]})")))  # type: ignore[arg-type]
    return "".join(out)


def markdown_to_html(markdown: str, *, title: str, base: str | Path = ".") -> str:
    """The evaluation report (headings, pipe tables, lists, images, paragraphs) as a standalone HTML page."""
    base = Path(base)
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                i += 1
            head, *rest = rows or [[]]
            body.append("<table><tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in r) + "</tr>"
                                  for r in rest) + "</table>")
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            n = len(heading.group(1))
            body.append(f"<h{n}>{_inline(heading.group(2), base)}</h{n}>")
        elif line.startswith(("- ", "* ")):
            items = []
            while i < len(lines) and lines[i].startswith(("- ", "* ")):
                items.append(f"<li>{_inline(lines[i][2:], base)}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line:
            body.append(f"<p>{_inline(line, base)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def publish_evaluation(result: Any, metrics: Any, report_md: Any, report_html: Any, evaluation: Any, *,
                       title: str) -> dict[str, float]:
    """Publish an EvaluationResult on an evaluate step's artifacts: every finite headline metric on METRICS,
    report.md as Markdown and as one self-contained HTML page, and where the evaluation folder is (register
    reads it from EVALUATION). Returns the metrics."""
    headline = scalar_metrics(result.headline())
    for name, value in headline.items():
        metrics.log_metric(name, value)
    out = Path(result.out)
    md = out / "report.md"
    copy_file(md, report_md.path)
    _write_text(report_html.path, markdown_to_html(md.read_text(), title=title, base=out))
    where = {"path": str(out), "report": str(md), "mlflow_run_id": getattr(result, "mlflow_run_id", None) or ""}
    for art in (report_md, report_html, evaluation):
        art.metadata.update(where)
    write_json(evaluation.path, {**where, "metrics": headline})
    return headline


def publish_skipped(report_md: Any, report_html: Any, evaluation: Any, *, title: str, reason: str) -> None:
    """An evaluate step that had nothing to score: the reports say why, the evaluation names no folder (so
    register leaves it out) and no metric is logged."""
    text = f"# {title}: not run\n\n{reason}\n"
    _write_text(report_md.path, text)
    _write_text(report_html.path, markdown_to_html(text, title=title))
    for art in (report_md, report_html, evaluation):
        art.metadata.update({"path": "", "skipped": reason})
    write_json(evaluation.path, {"path": "", "skipped": reason, "metrics": {}})


def _write_text(path: str | Path, text: str) -> None:
    from esi.data.store import atomic_write_bytes

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), text.encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def score_input(records: str) -> Path:
    """The folder to score: RECORDS, or the real sample records shipped with ESI when empty."""
    from esi.pipeline.local import SAMPLE_RECORDS

    folder = Path(records) if records else SAMPLE_RECORDS
    if not folder.exists():
        raise ConfigError(f"score input {folder} does not exist; pass the records folder (score_input=...)")
    return folder


def shard_out(out: str | Path, shard: int, n_shards: int, run_id: str = "") -> Path:
    """Each scoring task writes its own folder, so parallel shards never share an output (one writer each);
    a scheduled run (RUN_ID) gets a folder of its own."""
    return Path(out) / run_id / f"shard-{shard}-of-{n_shards}"


_SUMMED = ("records", "records_this_run", "rejects", "parts_done", "parts_written", "parts_skipped")


def merge_scores(folders: list[str], out: str | Path) -> dict[str, Any]:
    """Combine the shards' summary.json into OUT/summary-all.json: counts are summed, ``seconds`` is the slowest
    shard (they ran in parallel), ``parts_total`` is the input's, and the shards' own summaries are kept."""
    total: dict[str, Any] = {"path": str(out), "shards": [], "seconds": 0.0, **{k: 0 for k in _SUMMED}}
    for folder in sorted(str(f) for f in folders):
        summary = read_json(Path(folder) / "summary.json")
        total["shards"].append(folder)
        for k in _SUMMED:
            total[k] += int(summary.get(k) or 0)
        total["seconds"] = max(total["seconds"], float(summary.get("seconds") or 0.0))
        total["parts_total"] = max(int(total.get("parts_total", 0)), int(summary.get("parts_total") or 0))
        for k in ("model", "model_version", "input"):
            total.setdefault(k, summary.get(k))
    total["records_per_s"] = round(total["records_this_run"] / total["seconds"], 2) if total["seconds"] else 0.0
    write_json(Path(out) / "summary-all.json", total)
    return total
