"""``esi score``: zero-shot scores and embeddings of a whole archive, in resumable Parquet parts.

Layout of ``OUT``::

    OUT/plan.json               what is scored (input, model digest, label set, part size); a re-run must match
    OUT/scores/part-00000.parquet   one row per scored record (schema in docs/serving.md); a part exists only
                                    once complete (atomic write), so a re-run skips it
    OUT/rejects/part-00000.parquet  records of that part that could not be read, with the reason
    OUT/rejects.parquet         all rejects so far (record_id, source, path, reason)
    OUT/summary.json            records, rejects, seconds, throughput, model, drift

Items are cut into parts of ``part_size`` records; ``shard=(i, n)`` (1-based) scores the parts k with
k % n == i - 1, so parallel tasks into one OUT never write the same part. The model is in-process (an MLflow
URI or checkpoint) or a running service (``http://HOST:PORT``: windows go to its ``encode`` in chunks, label
prompts to ``embed_text``; scores are then the same computation as in-process).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.errors import ConfigError
from esi.serving.engine import mean_prompt_embeddings, rule_scores, top_indices
from esi.serving.labels import LabelSet
from esi.serving.malloc import fix_mmap_threshold

log = logging.getLogger(__name__)

REJECT_COLUMNS = ["record_id", "source", "path", "reason"]
DRIFT_SAMPLE = 1000


@dataclass
class ScoreSummary:
    """What ``esi score`` produced (also OUT/summary.json). Counts cover every finished part of OUT."""

    out: str
    input: str
    input_kind: str
    model: str
    model_name: str | None = None
    model_version: str | None = None
    model_digest: str | None = None
    shard: list[int] = field(default_factory=lambda: [1, 1])
    labels: dict[str, Any] = field(default_factory=dict)
    records: int = 0
    rejects: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    parts_total: int = 0
    parts_done: int = 0
    parts_written: int = 0
    parts_skipped: int = 0
    complete: bool = False
    records_this_run: int = 0
    seconds: float = 0.0  # wall time of this run, model loading included
    scoring_seconds: float = 0.0  # reading, preprocessing, embedding and writing the parts
    records_per_s: float = 0.0  # records_this_run / scoring_seconds
    batch_size: int = 64
    drift: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ENGINES: dict[tuple, Any] = {}


def _engine(uri: str, batch_size: int) -> Any:
    """An Engine for ``uri``; a checkpoint file is loaded once per process while it is unchanged on disk
    (a models:/ URI is always resolved again: its alias may have moved)."""
    from esi.serving.engine import Engine

    path = Path(uri)
    if not path.is_file():
        return Engine.from_uri(uri, batch_size=batch_size)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    engine = _ENGINES.get(key)
    if engine is None:
        _ENGINES.clear()
        engine = _ENGINES[key] = Engine.from_uri(uri, batch_size=batch_size)
    engine.batch_size = batch_size
    return engine


class LocalScorer:
    """The model in this process (Engine)."""

    def __init__(self, uri: str, batch_size: int) -> None:
        self.engine = _engine(uri, batch_size)
        self.info = dict(self.engine.info)
        self.preprocess = self.engine.preprocess

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        return self.engine.embed_windows(windows)

    def label_embeddings(self, labels: LabelSet) -> np.ndarray:
        return self.engine.label_embeddings(labels)


class HttpScorer:
    """A running ESI service, through ``bentoml.SyncHTTPClient``."""

    def __init__(self, url: str, batch_size: int, timeout: float = 300.0) -> None:
        import bentoml

        from esi.serving.engine import preprocess_from_dict

        try:
            self.client = bentoml.SyncHTTPClient(url, timeout=timeout, server_ready_timeout=60)
        except Exception as exc:  # connection refused, not a BentoML server ...
            raise ConfigError(f"--model {url}: no ESI service answers there ({type(exc).__name__}: {exc}); start one "
                              "with 'bentoml serve esi:latest'") from None
        self.info = dict(self.client.info())
        self.preprocess = preprocess_from_dict(self.info["preprocess"])
        limits = self.info.get("limits", {})
        self.max_labels = int(limits.get("max_labels", 512))
        # JSON spends about 20 bytes a sample: keep each request under the service's body limit
        per_window = 20 * 12 * self.preprocess.n_samples
        self.chunk = max(1, min(batch_size, int(limits.get("max_records", 256)),
                                int(limits.get("max_bytes", 64 * 2**20) * 0.9) // per_window))

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(windows, np.float32)
        out = [np.asarray(self.client.encode(windows=arr[s:s + self.chunk]), np.float32)
               for s in range(0, len(arr), self.chunk)]
        return np.concatenate(out)

    def _embed_text(self, texts: list[str]) -> np.ndarray:
        out = [np.asarray(self.client.embed_text(prompts=texts[s:s + self.max_labels])["embeddings"], np.float32)
               for s in range(0, len(texts), self.max_labels)]
        return np.concatenate(out)

    def label_embeddings(self, labels: LabelSet) -> np.ndarray:
        return mean_prompt_embeddings(labels, self._embed_text)


def _scorer(model: str, batch_size: int) -> Any:
    if str(model).startswith(("http://", "https://")):
        return HttpScorer(str(model), batch_size)
    return LocalScorer(str(model), batch_size)


def _labels(labels: str | LabelSet) -> LabelSet:
    from esi.serving.labels import default_labels, load_label_file

    if isinstance(labels, LabelSet):
        return labels
    return default_labels() if labels in (None, "", "default") else load_label_file(labels)


def score(input: str | Path, out: str | Path, *, model: str = "models:/esi@champion", source: str | None = None,
          shard: tuple[int, int] = (1, 1), labels: str | LabelSet = "default", batch_size: int = 64,
          progress: bool = True, part_size: int = 1024, top_k: int = 5, reference: Any = "auto") -> ScoreSummary:
    """Score every record of ``input`` into ``out``; returns the summary (also written to OUT/summary.json).

    Args:
        input: a store, a folder of WFDB records, or a dataset root (with ``source``).
        out: output folder (created; finished parts are skipped when re-run).
        model: MLflow URI, checkpoint path, or ``http://HOST:PORT`` of a running service.
        source: reader of a dataset root (ptbxl, challenge, icbeb, mimic, wfdb).
        shard: (i, n), 1-based: this task scores parts k with k % n == i - 1.
        labels: 'default' (the condition vocabulary) or a label file (see esi.serving.labels.load_label_file).
        batch_size: records per forward pass.
        part_size: records per Parquet part (the unit of resumption).
        top_k: conditions listed in ``top_conditions`` / ``top_names``.
        reference: reference embeddings for drift: 'auto' (esi.registry.load_reference of the model), an
            (n, D) array, or None.
    """
    i, n = shard
    if not (1 <= i <= n):
        raise ConfigError(f"--shard {i}/{n}: need 1 <= i <= n (1-based, e.g. 1/4)")
    if batch_size < 1 or part_size < 1 or top_k < 1:
        raise ConfigError("batch_size, part_size and top_k must be >= 1")
    out = Path(out)
    fix_mmap_threshold()  # memory flat in the number of records (see esi.serving.malloc)
    try:
        from esi.data.lock import exclusive_lock
    except ImportError:  # pragma: no cover - older trees without the lock helper
        exclusive_lock = None
    lock = exclusive_lock(out, f"esi score --shard {i}/{n}", shared=n > 1) if exclusive_lock else \
        contextlib.nullcontext()
    with lock:
        return _score(input, out, model=model, source=source, shard=(i, n), labels=_labels(labels),
                      batch_size=batch_size, progress=progress, part_size=part_size, top_k=top_k, reference=reference)


def _score(input: str | Path, out: Path, *, model: str, source: str | None, shard: tuple[int, int], labels: LabelSet,
           batch_size: int, progress: bool, part_size: int, top_k: int, reference: Any) -> ScoreSummary:
    from tqdm.auto import tqdm

    from esi.serving.sources import check_store_matches, open_input, read_windows

    t0 = time.perf_counter()
    inp = open_input(input, source)
    scorer = _scorer(model, batch_size)
    check_store_matches(inp, scorer.preprocess)
    from esi.serving.labels import scoring_labels
    from esi.settings import get_settings

    rule = str(get_settings().serve_score_rule)
    label_emb = scorer.label_embeddings(scoring_labels(labels, rule))
    k_top = min(top_k, len(labels))
    n_parts = max(1, -(-len(inp.items) // part_size))
    plan = {**inp.describe(), "part_size": part_size, "model_digest": scorer.info.get("digest"),
            "model_version": str(scorer.info.get("version")), "labels": labels.digest(), "top_k": k_top,
            "score_rule": rule, "preprocess": scorer.preprocess.to_dict()}
    _check_plan(out, plan)
    i, n = shard
    mine = [k for k in range(n_parts) if k % n == i - 1]
    todo = [k for k in mine if not _part(out, k).exists()]
    summary = ScoreSummary(out=str(out), input=str(inp.path), input_kind=inp.kind, model=str(model),
                           model_name=scorer.info.get("name"), model_version=_text(scorer.info.get("version")),
                           model_digest=scorer.info.get("digest"), shard=[i, n], labels=labels.to_dict(),
                           parts_total=n_parts, parts_skipped=len(mine) - len(todo), batch_size=batch_size)
    summary.labels.pop("ids", None), summary.labels.pop("names", None)
    meta = {"model_name": summary.model_name or "esi", "model_version": summary.model_version or ""}
    n_todo = sum(min(part_size, len(inp.items) - k * part_size) for k in todo)
    bar = tqdm(total=n_todo, desc="esi score", unit="rec", disable=not progress, dynamic_ncols=True)
    t_loop = time.perf_counter()
    try:
        for k in todo:
            items = inp.items[k * part_size:(k + 1) * part_size]
            rows, rejects = [], []
            for good, windows, bad in read_windows(inp, items, scorer.preprocess, batch_size):
                rejects += bad
                if good:
                    emb = scorer.embed_windows(windows)
                    rows.append((good, emb, rule_scores(emb, label_emb, labels, rule)))
                bar.update(len(good) + len(bad))
                summary.records_this_run += len(good)
            _write_part(out, k, rows, rejects, labels, k_top, meta)
            summary.parts_written += 1
            bar.set_postfix(rec_s=f"{summary.records_this_run / max(time.perf_counter() - t_loop, 1e-9):.1f}")
    finally:
        bar.close()
    summary.scoring_seconds = time.perf_counter() - t_loop
    _finish(out, summary, n_parts, scorer, model, reference)
    summary.seconds = time.perf_counter() - t0
    summary.records_per_s = summary.records_this_run / max(summary.scoring_seconds, 1e-9)
    _write_summary(out, summary)
    log.info("scored %d records in %.1f s (%.1f records/s; %.1f s in all); %d rejects; output %s",
             summary.records_this_run, summary.scoring_seconds, summary.records_per_s, summary.seconds,
             summary.rejects, out)
    return summary


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _part(out: Path, k: int) -> Path:
    return out / "scores" / f"part-{k:05d}.parquet"


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    from esi.data.store import atomic_write_json

    path = out / "plan.json"
    plan = json.loads(json.dumps(plan, default=str))
    if path.exists():
        old = json.loads(path.read_text())
        if old != plan:
            diff = sorted(k for k in set(plan) | set(old) if old.get(k) != plan.get(k))
            raise ConfigError(f"{out} holds scores of another run ({', '.join(diff)} differ); choose another --out "
                              "(or remove that folder yourself if its scores are no longer needed)")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not an 'esi score' output (no plan.json); choose another --out")
    atomic_write_json(path, plan)


def _write_part(out: Path, k: int, rows: list, rejects: list[dict], labels: LabelSet, top_k: int,
                meta: dict[str, str]) -> None:
    """Rejects first, then the scores part: the scores file marks the part done."""
    import pandas as pd

    from esi.data.store import atomic_write_bytes, atomic_write_parquet

    atomic_write_parquet(out / "rejects" / f"part-{k:05d}.parquet", pd.DataFrame(rejects, columns=REJECT_COLUMNS))
    atomic_write_bytes(_part(out, k), _scores_parquet(rows, labels, top_k, meta))


def score_columns(labels: LabelSet) -> list[str]:
    """The score column names: ``score_<condition id>`` (SNOMED CT id where one exists)."""
    return [f"score_{lid}" for lid in labels.ids]


def _scores_parquet(rows: list, labels: LabelSet, top_k: int, meta: dict[str, str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = [it for good, _, _ in rows for it in good]
    dim = rows[0][1].shape[1] if rows else 0
    emb = np.concatenate([e for _, e, _ in rows]).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    sc = np.concatenate([s for _, _, s in rows]).astype(np.float32) if rows else np.zeros((0, len(labels)), np.float32)
    top = [top_indices(row, top_k) for row in sc]
    ids, names = labels.ids, labels.names
    offsets = pa.array(np.arange(len(items) + 1, dtype=np.int32) * dim)
    columns: dict[str, Any] = {
        "record_id": pa.array([it.record_id for it in items], pa.string()),
        "source": pa.array([it.source for it in items], pa.string()),
        "path": pa.array([it.path for it in items], pa.string()),
        "model_name": pa.array([meta["model_name"]] * len(items), pa.string()),
        "model_version": pa.array([meta["model_version"]] * len(items), pa.string()),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1), pa.float32())),
    }
    for j, col in enumerate(score_columns(labels)):
        columns[col] = pa.array(sc[:, j], pa.float32())
    columns["top_conditions"] = pa.array([[ids[j] for j in t] for t in top], pa.list_(pa.string()))
    columns["top_names"] = pa.array([[names[j] for j in t] for t in top], pa.list_(pa.string()))
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def _finish(out: Path, summary: ScoreSummary, n_parts: int, scorer: Any, model: str, reference: Any) -> None:
    """Totals over every finished part, the merged rejects table, and drift on a sample of the embeddings."""
    import pandas as pd
    import pyarrow.parquet as pq

    from esi.data.store import atomic_write_parquet
    from esi.serving.drift import Reservoir, drift_report

    done = [k for k in range(n_parts) if _part(out, k).exists()]
    summary.parts_done, summary.complete = len(done), len(done) == n_parts
    sample = Reservoir(DRIFT_SAMPLE, seed=0)
    rejects = []
    for k in done:
        table = pq.read_table(_part(out, k), columns=["embedding"])
        summary.records += table.num_rows
        if table.num_rows:
            flat = table.column("embedding").combine_chunks().flatten().to_numpy()
            sample.add(flat.reshape(table.num_rows, -1))
        rej = out / "rejects" / f"part-{k:05d}.parquet"
        if rej.exists():
            rejects.append(pd.read_parquet(rej))
    rej_df = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    atomic_write_parquet(out / "rejects.parquet", rej_df)
    summary.rejects = len(rej_df)
    reasons = rej_df["reason"].astype(str).str.split(";").str[0].str.slice(0, 120) if len(rej_df) else []
    counts = pd.Series(reasons).value_counts().head(20) if len(rej_df) else pd.Series(dtype=int)
    summary.reject_reasons = {str(k): int(v) for k, v in counts.items()}
    ref = _reference(scorer, model) if isinstance(reference, str) and reference == "auto" else reference
    summary.drift = drift_report(sample.array(), None if ref is None else np.asarray(ref, np.float32))


def _reference(scorer: Any, model: str) -> np.ndarray | None:
    """The registered reference embeddings of the model (for a service: of the URI it serves)."""
    uri = scorer.info.get("model_uri") or model
    if str(uri).startswith("http"):
        return None
    try:
        from esi.registry import load_reference
    except ImportError:  # pragma: no cover - trees without the registry
        return None
    try:
        return load_reference(str(uri))
    except Exception as exc:  # drift is a report, not a reason to fail the scoring run
        log.warning("no reference embeddings for drift (%s: %s)", type(exc).__name__, exc)
        return None


def _write_summary(out: Path, summary: ScoreSummary) -> None:
    from esi.data.store import atomic_write_json

    atomic_write_json(out / "summary.json", summary.to_dict())
