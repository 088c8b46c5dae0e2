"""``esi data prepare``: any source -> a store, in shards, with worker processes, resumable, with rejects."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.lock import exclusive_lock
from esi.data.preprocess import PreprocessConfig, preprocess
from esi.data.readers import get_reader
from esi.data.readers.base import RecordRef
from esi.data.record import LEADS
from esi.data.store import (
    FILE_MODE,
    MANIFEST_COLUMNS,
    SCHEMA_VERSION,
    SIGNAL_DTYPE,
    STORE_FORMAT,
    atomic_write_json,
    atomic_write_parquet,
    is_esi_store,
)
from esi.errors import ConfigError, DataError, EsiError, StoreError

log = logging.getLogger(__name__)


@dataclass
class PrepareSummary:
    """What a prepare run did."""

    out: str
    records_seen: int = 0
    windows_written: int = 0
    rejected: int = 0
    shards_total: int = 0
    shards_done_now: int = 0
    shards_skipped: int = 0
    complete: bool = False
    seconds: float = 0.0
    unmapped_labels: dict[str, int] = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.records_seen / self.seconds if self.seconds > 0 else 0.0


def _harmonizer():
    """The label harmoniser of the CQA vocabulary (import kept local: workers import it once)."""
    from esi.conditions.harmonize import harmonize

    return harmonize


def _process(task: tuple[str, RecordRef, PreprocessConfig]) -> tuple[list[dict], list[np.ndarray], dict | None]:
    """Worker: read + preprocess + harmonise one record. Never raises for a bad record: returns a reject."""
    source, ref, config = task
    if ref.error:
        return [], [], {"record_id": ref.record_id, "path": ref.path, "reason": ref.error}
    try:
        record = get_reader(source).read(ref)
        harmonized = _harmonizer()(record.label_system, record.labels, record.report)
        record.conditions = harmonized.conditions
        rows, sigs = [], []
        for win in preprocess(record, config):
            m = win.meta
            rows.append({
                "record_id": win.record_id, "source": win.source, "subject_id": win.subject_id,
                "age": win.age, "sex": win.sex, "fold": win.fold, "label_system": win.label_system,
                "labels": json.dumps(win.labels, sort_keys=True),
                "conditions": json.dumps(harmonized.conditions, sort_keys=True),
                "report": win.report, "path": win.path, "original_fs": float(m["original_fs"]),
                "original_n_samples": int(m["original_n_samples"]), "window": int(m["window"]),
                "padded_samples": int(m["padded_samples"]), "nan_fraction": float(m["nan_fraction"]),
                "nan_filled": bool(m["nan_filled"]), "unmapped": harmonized.unmapped,
                "flags": json.dumps(list(m.get("flags") or [])),
            })
            sigs.append(win.signal.astype(SIGNAL_DTYPE))  # half the bytes to pickle and to hold
        return rows, sigs, None
    except EsiError as exc:
        return [], [], {"record_id": ref.record_id, "path": ref.path, "reason": str(exc)}
    except Exception as exc:  # a reader bug must not lose the batch: reject the record, keep the reason
        return [], [], {"record_id": ref.record_id, "path": ref.path,
                        "reason": f"unexpected {type(exc).__name__}: {exc}; file: {ref.path}"}


def _plan(source: str, root: Path, n_refs: int, shard_size: int, config: PreprocessConfig) -> dict[str, Any]:
    return {"source": source, "root": str(root.resolve()), "n_refs": n_refs, "shard_size": shard_size,
            "preprocess": config.to_dict(), "preprocess_digest": config.digest()}


def check_paths(root: Path, out: Path) -> None:
    """Refuse an output equal to, inside, or containing the dataset root (the source would be overwritten)."""
    r, o = root.resolve(), out.resolve()
    if o == r or r in o.parents or o in r.parents:
        rel = "is" if o == r else ("is inside" if r in o.parents else "contains")
        raise ConfigError(f"--out {out} {rel} --root {root}: a store must not mix with its source data; "
                          "fix: choose an --out outside the dataset folder")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready: new or empty, or an ESI store; --overwrite deletes only an ESI store."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; fix: choose a folder for the store")
    if not any(out.iterdir()):
        return
    if not is_esi_store(out):
        raise ConfigError(f"--out {out} is a non-empty folder that is not an ESI store (no ESI header.json); "
                          "ESI deletes or writes into it only when it is one, with or without --overwrite; "
                          "fix: choose a new or empty --out")
    if overwrite:
        log.info("--overwrite: deleting the ESI store %s", out)
        shutil.rmtree(out)


def _check_or_write_plan(out: Path, plan: dict[str, Any], resume: bool) -> None:
    plan_path = out / "plan.json"
    if plan_path.exists():
        try:
            old = json.loads(plan_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"store {out}: plan.json is unreadable ({exc}); file: {plan_path}; fix: re-run "
                             "with --overwrite to rebuild the store") from exc
        if old != plan:
            diff = sorted(k for k in plan if not isinstance(old, dict) or old.get(k) != plan[k])
            raise StoreError(f"{out} holds a store prepared with other settings ({', '.join(diff)} differ); "
                             "pass --overwrite to rebuild it or choose another --out")
        return
    if resume:
        raise StoreError(f"--resume: {out} holds no store to resume (plan.json missing); fix: run without "
                         "--resume to create it, or with --overwrite to rebuild it")
    out.mkdir(parents=True, exist_ok=True)
    # the header comes first, incomplete: from now on the folder proves it is ours (for --overwrite, resume)
    if not (out / "header.json").exists():
        atomic_write_json(out / "header.json", {"format": STORE_FORMAT, "schema_version": SCHEMA_VERSION,
                                                "complete": False, "plan": plan, "shards_done": 0})
    atomic_write_json(plan_path, plan)


def _shard_done(out: Path, k: int) -> bool:
    d = out / "shards" / f"shard-{k:05d}"
    return all((d / f).is_file() for f in ("signals.npy", "manifest.parquet", "rejects.parquet"))


def _write_shard(out: Path, k: int, rows: list[dict], sigs: list[np.ndarray], rejects: list[dict],
                 n_samples: int) -> None:
    import pandas as pd

    shards = out / "shards"
    final = shards / f"shard-{k:05d}"
    tmp = shards / f".tmp-shard-{k:05d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arr = np.lib.format.open_memmap(tmp / "signals.npy", mode="w+", dtype=SIGNAL_DTYPE,
                                    shape=(len(sigs), len(LEADS), n_samples))
    for i, s in enumerate(sigs):
        arr[i] = s
    arr.flush()
    del arr
    manifest = pd.DataFrame(rows)
    if len(manifest):
        manifest["shard"] = k
        manifest["row"] = np.arange(len(manifest))
    manifest.to_parquet(tmp / "manifest.parquet", index=False)
    pd.DataFrame(rejects, columns=["record_id", "path", "reason"]).to_parquet(tmp / "rejects.parquet",
                                                                              index=False)
    for f in tmp.iterdir():
        os.chmod(f, FILE_MODE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # the shard is complete exactly when its folder has its final name


def _pool(workers: int):
    # fork is fast, but not safe once torch (OpenMP threads) is loaded in this process
    method = "spawn" if "torch" in sys.modules else "fork"
    return mp.get_context(method).Pool(workers)


def _finalise(out: Path, plan: dict[str, Any], n_shards: int, config: PreprocessConfig) -> tuple[int, int]:
    import pandas as pd

    manifests, rejects = [], []
    for k in range(n_shards):
        d = out / "shards" / f"shard-{k:05d}"
        manifests.append(pd.read_parquet(d / "manifest.parquet"))
        rejects.append(pd.read_parquet(d / "rejects.parquet"))
    manifest = pd.concat([m for m in manifests if len(m)], ignore_index=True) if any(
        len(m) for m in manifests) else pd.DataFrame(columns=[*MANIFEST_COLUMNS, "unmapped", "flags"])
    if manifest["record_id"].duplicated().any():
        dups = manifest.loc[manifest["record_id"].duplicated(), "record_id"].head(5).tolist()
        log.warning("duplicate record ids in the source: %s (validation will flag them)", dups)
    manifest["unmapped"] = manifest["unmapped"].apply(lambda v: json.dumps(list(v) if v is not None else []))
    if "flags" not in manifest:
        manifest["flags"] = "[]"
    rej = pd.concat(rejects, ignore_index=True)
    atomic_write_parquet(out / "manifest.parquet", manifest)
    atomic_write_parquet(out / "rejects.parquet", rej)
    header = {
        "format": STORE_FORMAT, "schema_version": SCHEMA_VERSION, "fs": config.fs, "n_samples": config.n_samples,
        "duration_s": config.duration_s, "leads": list(LEADS), "dtype": SIGNAL_DTYPE, "units": "mV",
        "preprocess": config.to_dict(), "plan": plan, "n_records": int(len(manifest)), "n_rejects": int(len(rej)),
        "n_shards": n_shards, "shards_done": n_shards, "complete": True,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(out / "header.json", header)  # written last: its 'complete' marks a usable store
    return len(manifest), len(rej)


def prepare(source: str, root: str | Path, out: str | Path, *, config: PreprocessConfig | None = None,
            shard_size: int = 1000, workers: int = 0, shard: tuple[int, int] | None = None,
            limit: int | None = None, overwrite: bool = False, resume: bool = False, progress: bool = True,
            reader_options: dict[str, Any] | None = None, lock_timeout: float = 0.0) -> PrepareSummary:
    """Convert a source dataset into a store.

    Args:
        source: ptbxl | challenge | icbeb | mimic | wfdb.
        root: dataset folder.
        out: store folder (created). It must be new, empty, or an ESI store, and lie outside ``root``.
        config: preprocessing (default PreprocessConfig()).
        shard_size: records per shard; finished shards are skipped when the command is run again.
        workers: worker processes (0 = in-process).
        shard: (i, n) to process only shards k with k % n == i (parallel tasks); the store is finalised
            by whichever task finds every shard done.
        limit: only the first ``limit`` records (smoke runs).
        overwrite: delete the ESI store at ``out`` first (never a folder that is not an ESI store).
        resume: insist on continuing (or repairing) the store at ``out``; re-running without it resumes too.
        reader_options: extra keyword arguments of the reader's list_refs (e.g. rate).
        lock_timeout: seconds to wait for another writer of ``out`` before raising LockedError.
    """
    config = config or PreprocessConfig()
    root, out = Path(root), Path(out)
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume contradict each other; fix: pass one of them")
    if overwrite and shard is not None:
        raise ConfigError("--overwrite with --shard would let one shard task delete the others' work; fix: "
                          "delete the store with one 'esi data prepare --overwrite' run, then start the shards")
    check_paths(root, out)
    what = "esi data prepare" + (f" --shard {shard[0]}/{shard[1]}" if shard else "")
    if shard is None:
        with exclusive_lock(out, what, timeout=lock_timeout):
            return _run(source, root, out, config, shard_size, workers, None, limit, overwrite, resume,
                        progress, reader_options)
    # parallel shard tasks share the store (one writer per shard) and meet for setup and finalising only
    with exclusive_lock(out, what, timeout=lock_timeout, shared=True, key=f"shard-{shard[0]}-of-{shard[1]}"), \
            exclusive_lock(out.parent / f"{out.name}.shard-{shard[0]}-of-{shard[1]}", what, timeout=lock_timeout):
        return _run(source, root, out, config, shard_size, workers, shard, limit, overwrite, resume, progress,
                    reader_options)


@contextlib.contextmanager
def _setup_lock(out: Path, shard: tuple[int, int] | None):
    """Serialise the shard tasks' setup and finalising (a whole run already holds the store exclusively)."""
    if shard is None:
        yield
        return
    with exclusive_lock(out.parent / f"{out.name}.setup", "esi data prepare (setup)", timeout=600):
        yield


def _run(source: str, root: Path, out: Path, config: PreprocessConfig, shard_size: int, workers: int,
         shard: tuple[int, int] | None, limit: int | None, overwrite: bool, resume: bool, progress: bool,
         reader_options: dict[str, Any] | None) -> PrepareSummary:
    from tqdm import tqdm

    t0 = time.perf_counter()
    reader = get_reader(source)
    refs = reader.list_refs(root, **(reader_options or {}))  # every table error surfaces here, before any work
    if limit is not None:
        refs = refs[:limit]
    if not refs:
        raise DataError(f"no records found under {root} for source {source}; expected {reader.EXPECTED}",
                        path=str(root), fix="check --root and --source")
    n_shards = max(1, -(-len(refs) // shard_size))
    plan = _plan(source, root, len(refs), shard_size, config)
    with _setup_lock(out, shard):
        _prepare_out(out, overwrite)
        _check_or_write_plan(out, plan, resume)
    summary = PrepareSummary(out=str(out), shards_total=n_shards)
    mine = [k for k in range(n_shards) if shard is None or k % shard[1] == shard[0]]
    todo = [k for k in mine if not _shard_done(out, k)]
    summary.shards_skipped = len(mine) - len(todo)
    n_todo = sum(len(refs[k * shard_size:(k + 1) * shard_size]) for k in todo)
    pool = _pool(workers) if workers > 0 and n_todo > 1 else None
    unmapped: dict[str, int] = {}
    try:
        bar = tqdm(total=n_todo, desc=f"prepare {source}", unit="rec", disable=not progress)
        for k in todo:
            chunk = refs[k * shard_size:(k + 1) * shard_size]
            tasks = [(source, ref, config) for ref in chunk]
            results = pool.imap(_process, tasks, chunksize=8) if pool else map(_process, tasks)
            rows, sigs, rejects = [], [], []
            for r_rows, r_sigs, reject in results:
                rows.extend(r_rows)
                sigs.extend(r_sigs)
                if reject:
                    rejects.append(reject)
                    log.warning("rejected %s: %s", reject["record_id"], reject["reason"])
                for row in r_rows[:1]:
                    for label in row["unmapped"]:
                        unmapped[label] = unmapped.get(label, 0) + 1
                bar.update(1)
            if len(rows) + len(rejects) < len(chunk):  # every record is a window or a reject, never lost
                raise StoreError(f"shard {k}: {len(chunk)} records, but only {len(rows)} windows and "
                                 f"{len(rejects)} rejects came back")
            _write_shard(out, k, rows, sigs, rejects, config.n_samples)
            summary.records_seen += len(chunk)
            summary.windows_written += len(rows)
            summary.rejected += len(rejects)
            summary.shards_done_now += 1
        bar.close()
    finally:
        if pool:
            pool.close()
            pool.join()
    summary.unmapped_labels = dict(sorted(unmapped.items(), key=lambda kv: -kv[1]))
    with _setup_lock(out, shard):
        done = sum(_shard_done(out, k) for k in range(n_shards))
        if done == n_shards:
            n_records, n_rejects = _finalise(out, plan, n_shards, config)
            summary.complete = True
            summary.windows_written, summary.rejected = n_records, n_rejects
        else:
            atomic_write_json(out / "header.json", {"format": STORE_FORMAT, "schema_version": SCHEMA_VERSION,
                                                    "complete": False, "n_shards": n_shards, "shards_done": done,
                                                    "plan": plan})
    summary.seconds = time.perf_counter() - t0
    log.info("prepared %d records in %.1f s (%.1f records/s), %d rejected", summary.records_seen,
             summary.seconds, summary.records_per_s, summary.rejected)
    return summary
