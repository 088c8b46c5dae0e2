"""What ``esi score`` reads: a store, a folder of WFDB records, or a source dataset root (any ESI reader).

Each input becomes a deterministic list of :class:`Item` (cheap pointers) and a function that turns a slice
of items into preprocessed windows plus reject rows, one bad record never stopping its neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.data.preprocess import PreprocessConfig, preprocess
from esi.errors import ConfigError, DatasetNotFoundError, EsiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One record to score: ids for the output row and how to read it (a store row or a reader reference)."""

    record_id: str
    source: str
    path: str
    key: Any  # store row index, or a RecordRef


@dataclass
class Input:
    """An input of ``esi score``: kind (store | wfdb | <source>), items, and how to read windows of them."""

    kind: str
    path: Path
    items: list[Item]
    store: Any = None
    reader: Any = None
    quarantined: set[str] = field(default_factory=set)  # a store's quarantine list (validation)

    def describe(self) -> dict[str, Any]:
        return {"input": str(self.path.resolve()), "kind": self.kind, "n_items": len(self.items)}


def open_input(path: str | Path, source: str | None = None) -> Input:
    """STORE (a folder with header.json) | SOURCE_ROOT with ``source`` | a folder of WFDB records."""
    from esi.data.readers import SOURCES, get_reader
    from esi.data.store import open_store

    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"--input {path} does not exist; pass a store (esi data prepare), a folder of "
                                   "WFDB records, or a dataset root with --source")
    if (path / "header.json").is_file():
        if source:
            log.warning("--source %s is ignored: %s is a store", source, path)
        store = open_store(path)
        m = store.manifest
        quarantined = store.quarantined_ids()
        items = [Item(str(rid), str(src), str(p or ""), int(i)) for i, (rid, src, p) in
                 enumerate(zip(m["record_id"], m["source"], m["path"], strict=True))]
        return Input("store", path, items, store=store, quarantined=quarantined)
    if source and source not in SOURCES:
        raise ConfigError(f"--source {source!r}: known sources are {', '.join(SOURCES)}")
    reader = get_reader(source or "wfdb")
    refs = reader.list_refs(path)
    items = [Item(ref.record_id, ref.source, str(ref.path), ref) for ref in refs]
    return Input(source or "wfdb", path, items, reader=reader)


def check_store_matches(inp: Input, config: PreprocessConfig) -> None:
    """A store's windows must have the model's input rate and length (it was prepared for this model)."""
    if inp.store is None:
        return
    fs, n = int(inp.store.fs), int(inp.store.n_samples)
    if fs != int(config.fs) or n != int(config.n_samples):
        raise ConfigError(f"store {inp.path} holds {n} samples at {fs} Hz, the model expects {config.n_samples} at "
                          f"{config.fs} Hz; re-prepare it with the model's preprocessing or score the source root")


def read_windows(inp: Input, items: list[Item], config: PreprocessConfig,
                 batch_size: int) -> Iterator[tuple[list[Item], np.ndarray, list[dict[str, str]]]]:
    """Yield (items read, (k, 12, n) float32 windows, reject rows) batch by batch."""
    if inp.store is not None:
        yield from _store_windows(inp, items, batch_size)
        return
    from esi.serving.inputs import serving_config

    cfg = serving_config(config)
    for start in range(0, len(items), batch_size):
        good, sigs, rejects = [], [], []
        for item in items[start:start + batch_size]:
            try:
                if getattr(item.key, "error", None):  # the lister already knew the record is bad
                    raise EsiError(item.key.error)
                record = inp.reader.read(item.key)
                sigs.append(preprocess(record, cfg)[0].signal)
                good.append(item)
            except EsiError as exc:
                rejects.append(_reject(item, str(exc)))
            except Exception as exc:  # a reader bug must not stop the archive: reject the record with the reason
                rejects.append(_reject(item, f"unexpected {type(exc).__name__}: {exc}"))
        shape = (0, 12, config.n_samples)
        yield good, (np.stack(sigs).astype(np.float32) if sigs else np.zeros(shape, np.float32)), rejects


def _store_windows(inp: Input, items: list[Item], batch_size: int):
    """One iter_batches pass per part: it releases each shard's memory map once it has moved past it."""
    keep = [it for it in items if it.record_id not in inp.quarantined]
    rejects = [_reject(it, "quarantined by validation (see the store's quarantine.parquet)")
               for it in items if it.record_id in inp.quarantined]
    if not keep:
        yield [], np.zeros((0, 12, inp.store.n_samples), np.float32), rejects
        return
    start = 0
    for _, sig in inp.store.iter_batches(batch_size, [it.key for it in keep]):
        chunk = keep[start:start + len(sig)]
        start += len(sig)
        finite = np.isfinite(sig).all(axis=(1, 2))
        good = [it for it, ok in zip(chunk, finite, strict=True) if ok]
        rejects += [_reject(it, "stored signal holds non-finite values (NaN/inf)")
                    for it, ok in zip(chunk, finite, strict=True) if not ok]
        yield good, sig[finite], rejects
        rejects = []


def _reject(item: Item, reason: str) -> dict[str, str]:
    return {"record_id": item.record_id, "source": item.source, "path": item.path, "reason": reason}
