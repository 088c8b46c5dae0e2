"""``esi data prepare``: any source -> a store, in shards, with worker processes, resumable, with rejects.

The parent lists the records, splits each shard to do into parts (one part per shard, unless there are too
few shards to keep every worker busy to the end), and hands the parts to workers (esi.data.convert), which
stream their windows to disk; the parent commits a shard once all its parts are in (esi.data.shards), and
finally writes the store's manifest and header.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esi.data.convert import PartResult, PartTask, build_part, init_worker, part_path, warm_imports
from esi.data.layout import (
    MANIFEST_COLUMNS,
    SCHEMA_VERSION,
    SIGNAL_DTYPE,
    STORE_FORMAT,
    atomic_write_json,
    atomic_write_parquet,
    is_esi_store,
    shard_dir,
)
from esi.data.lock import exclusive_lock
from esi.data.preprocess import PreprocessConfig
from esi.data.readers import get_reader
from esi.data.readers.base import RecordRef
from esi.data.record import LEADS
from esi.data.shards import commit_shard, fresh_tmp_dir, shard_done
from esi.errors import ConfigError, DataError, StoreError

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


def _finalise(out: Path, plan: dict[str, Any], n_shards: int, config: PreprocessConfig) -> tuple[int, int]:
    import pandas as pd

    manifests, rejects = [], []
    for k in range(n_shards):
        manifests.append(pd.read_parquet(shard_dir(out, k) / "manifest.parquet"))
        rejects.append(pd.read_parquet(shard_dir(out, k) / "rejects.parquet"))
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


def _fifo_makespan(sizes: list[int], workers: int) -> int:
    """Records the busiest worker converts when ``workers`` take tasks of ``sizes`` in order."""
    loads = [0] * workers
    for size in sizes:
        heapq.heapreplace(loads, loads[0] + size)
    return max(loads)


def part_sizes(shard_sizes: list[int], workers: int, min_part: int = 32) -> list[list[int]]:
    """Records per part of each shard: whole shards while they keep every worker busy to the end (within
    10%); otherwise parts of about a quarter of a worker's share (a part is joined into its shard later)."""
    total = sum(shard_sizes)
    if workers <= 1 or not total or _fifo_makespan(shard_sizes, workers) <= 1.1 * total / workers:
        return [[m] for m in shard_sizes]
    target = max(min_part, -(-total // (4 * workers)))
    out = []
    for m in shard_sizes:
        n = max(1, m // target)  # parts of at least the target size
        out.append([m // n + (1 if j < m % n else 0) for j in range(n)])
    return out


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
    todo = [k for k in mine if not shard_done(out, k)]
    summary.shards_skipped = len(mine) - len(todo)
    chunks = {k: refs[k * shard_size:(k + 1) * shard_size] for k in todo}
    unmapped: Counter = Counter()
    _convert(source, out, config, chunks, workers, progress, summary, unmapped)
    summary.unmapped_labels = dict(sorted(unmapped.items(), key=lambda kv: -kv[1]))
    with _setup_lock(out, shard):
        done = sum(shard_done(out, k) for k in range(n_shards))
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


def _convert(source: str, out: Path, config: PreprocessConfig, chunks: dict[int, list[RecordRef]], workers: int,
             progress: bool, summary: PrepareSummary, unmapped: Counter) -> None:
    """Convert the shards of ``chunks`` (shard -> its records), committing each once all its parts are in."""
    from tqdm import tqdm

    sizes = part_sizes([len(c) for c in chunks.values()], workers)
    tasks, tmps, n_parts = [], {}, {}
    for (k, chunk), parts in zip(chunks.items(), sizes, strict=True):
        tmps[k], n_parts[k] = fresh_tmp_dir(out, k), len(parts)
        start = 0
        for j, size in enumerate(parts):
            tasks.append(PartTask(source, config, k, j, part_path(tmps[k], j), chunk[start:start + size]))
            start += size
    pending: dict[int, dict[int, PartResult]] = {}
    n_todo = sum(len(c) for c in chunks.values())
    with tqdm(total=n_todo, desc=f"prepare {source}", unit="rec", disable=not progress) as bar, \
            _results(tasks, workers if n_todo > 1 else 0, config, bar) as results:
        for res in results:
            for reject in res.rejects:
                log.warning("rejected %s: %s", reject["record_id"], reject["reason"])
            unmapped.update(res.unmapped)
            got = pending.setdefault(res.shard, {})
            got[res.part] = res
            if len(got) < n_parts[res.shard]:
                continue
            parts = [got[j] for j in range(n_parts[res.shard])]
            rows = [row for p in parts for row in p.rows]
            rejects = [rej for p in parts for rej in p.rejects]
            commit_shard(out, res.shard, tmps[res.shard], [Path(p.path) for p in parts], rows, rejects,
                         (len(LEADS), config.n_samples))
            del pending[res.shard]
            summary.records_seen += sum(p.n_records for p in parts)
            summary.windows_written += len(rows)
            summary.rejected += len(rejects)
            summary.shards_done_now += 1


@contextlib.contextmanager
def _results(tasks: list[PartTask], workers: int, config: PreprocessConfig, bar: Any
             ) -> Iterator[Iterator[PartResult]]:
    """The parts' results: converted in this process (workers=0) or by a pool of worker processes."""
    if workers <= 0:
        yield (build_part(task, tick=lambda: bar.update(1)) for task in tasks)
        return
    # fork is fast, but not safe once torch (OpenMP threads) is loaded in this process
    ctx = mp.get_context("spawn" if "torch" in sys.modules else "fork")
    if ctx.get_start_method() == "fork":
        warm_imports(config)  # imported once here and inherited, not once per worker
    counter = ctx.Value("q", 0)
    pool = ctx.Pool(min(workers, len(tasks)), initializer=init_worker, initargs=(counter, os.getpid(), config))
    try:
        yield _polled(pool.imap_unordered(build_part, tasks), counter, bar)
        pool.close()
    finally:
        pool.terminate()  # after close(): only reaps; on an error: stops the workers now
        pool.join()


def _polled(results: Any, counter: Any, bar: Any) -> Iterator[PartResult]:
    """Yield pool results as they come, moving the progress bar by the workers' record counter meanwhile."""
    while True:
        try:
            res = results.next(timeout=0.5)
        except mp.TimeoutError:
            bar.update(counter.value - bar.n)
            continue
        except StopIteration:
            return
        bar.update(counter.value - bar.n)
        yield res
