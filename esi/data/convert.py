"""The work of ``esi data prepare`` on records: read, harmonise, preprocess, and stream windows to disk.

A task is one part of one shard: a worker process (or the converter itself, in-process) reads its records
one at a time and writes their float16 windows straight into the part's ``.npy`` file in the shard's
temporary folder. Only the manifest rows and rejects (a few hundred bytes a record) go back to the parent,
which commits the shard once all its parts are in. A bad record is a reject row, never an exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esi.data.lock import close_inherited_locks
from esi.data.preprocess import PreprocessConfig, preprocess_windows, warm_up, window_id
from esi.data.readers import get_reader
from esi.data.readers.base import RecordRef
from esi.data.record import LEADS, EcgRecord
from esi.data.shards import NpyWriter
from esi.errors import EsiError, StoreError


@dataclass
class PartTask:
    """Records ``refs`` of shard ``shard`` (its part ``part``), to be written to ``path``."""

    source: str
    config: PreprocessConfig
    shard: int
    part: int
    path: str
    refs: list[RecordRef]


@dataclass
class PartResult:
    """What a finished part sends back: its rows and rejects, in record order; its windows are on disk."""

    shard: int
    part: int
    path: str
    n_records: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)


def _harmonizer():
    """The label harmoniser of the CQA vocabulary (import kept local: esi.data must not need it to load)."""
    from esi.conditions.harmonize import harmonize

    return harmonize


def _row(record: EcgRecord, conditions: dict[str, float], unmapped: list[str], index: int, padded: int,
         nan_frac: float) -> dict[str, Any]:
    return {
        "record_id": window_id(record.record_id, index), "source": record.source,
        "subject_id": record.subject_id, "age": record.age, "sex": record.sex, "fold": record.fold,
        "label_system": record.label_system, "labels": json.dumps(record.labels, sort_keys=True),
        "conditions": json.dumps(conditions, sort_keys=True), "report": record.report, "path": record.path,
        "original_fs": float(record.fs), "original_n_samples": int(record.n_samples), "window": int(index),
        "padded_samples": int(padded), "nan_fraction": float(nan_frac), "nan_filled": bool(nan_frac > 0),
        "unmapped": unmapped, "flags": json.dumps(list(record.meta.get("flags") or [])),
    }


def convert_record(source: str, ref: RecordRef, config: PreprocessConfig, sink: NpyWriter
                   ) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """(manifest rows, reject) of one record; its windows are appended to ``sink`` only once the whole
    record has been read and preprocessed, so a reject never leaves a window behind."""
    if ref.error:
        return [], {"record_id": ref.record_id, "path": ref.path, "reason": ref.error}
    try:
        record = get_reader(source).read(ref)
        harmonized = _harmonizer()(record.label_system, record.labels, record.report)
        record.conditions = harmonized.conditions
        wins, nan_frac = preprocess_windows(record, config)
        rows = [_row(record, harmonized.conditions, harmonized.unmapped, index, padded, nan_frac)
                for index, _, padded in wins]
    except EsiError as exc:
        return [], {"record_id": ref.record_id, "path": ref.path, "reason": str(exc)}
    except Exception as exc:  # a reader bug must not lose the batch: reject the record, keep the reason
        return [], {"record_id": ref.record_id, "path": ref.path,
                    "reason": f"unexpected {type(exc).__name__}: {exc}; file: {ref.path}"}
    for _, win, _ in wins:
        sink.append(win)  # an I/O error here is the run's, not the record's: it propagates
    return rows, None


def build_part(task: PartTask, tick: Callable[[], None] | None = None) -> PartResult:
    """Convert the records of one part into ``task.path``; ``tick`` is called once per record (progress)."""
    tick = tick or _TICK
    result = PartResult(task.shard, task.part, task.path, len(task.refs))
    sink = NpyWriter(task.path, (len(LEADS), task.config.n_samples))
    try:
        for ref in task.refs:
            rows, reject = convert_record(task.source, ref, task.config, sink)
            result.rows.extend(rows)
            if reject:
                result.rejects.append(reject)
            for label in rows[0]["unmapped"] if rows else ():
                result.unmapped[label] += 1
            tick()
    except BaseException:
        sink.abort()
        raise
    written = sink.close()
    if written != len(result.rows) or len(result.rows) + len(result.rejects) < len(task.refs):
        # every record is a window or a reject, and every row has its window: never lost, never shifted
        raise StoreError(f"shard {task.shard} part {task.part}: {len(task.refs)} records gave {len(result.rows)} "
                         f"rows, {written} windows and {len(result.rejects)} rejects; file: {task.path}")
    return result


# --- worker processes --------------------------------------------------------------------------------------
def _no_tick() -> None:
    """Progress callback of a part converted without one."""


_TICK: Callable[[], None] = _no_tick  # in worker processes: the shared record counter's (init_worker)


def init_worker(counter: Any, parent: int, config: PreprocessConfig) -> None:
    """Pool initializer: count progress in ``counter``, hold none of the parent's locks, die with the parent
    (a ``kill -9`` of it must not leave workers writing), and have what preprocessing imports loaded."""
    global _TICK

    def tick() -> None:
        with counter.get_lock():
            counter.value += 1

    _TICK = tick
    close_inherited_locks()
    if sys.platform.startswith("linux"):
        # best effort: without it an orphan finishes its part into the dead run's temporary folder (which the
        # next run deletes) and then waits for a task forever
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    warm_imports(config)  # a no-op after fork (inherited); the imports themselves under spawn


def warm_imports(config: PreprocessConfig) -> None:
    """Import what converting needs (scipy.signal and the filter design, the label harmoniser) now: before
    forking, so that workers inherit them instead of importing scipy.signal each (about 1.5 s apiece)."""
    warm_up(config)
    _harmonizer()


def part_path(tmp: Path, part: int) -> str:
    """Where part ``part`` of a shard is written inside the shard's temporary folder."""
    return str(tmp / f"part-{part:04d}.npy")
