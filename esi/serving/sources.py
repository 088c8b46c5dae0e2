"""What ``esi score`` reads: a store, a folder of WFDB records, or a source dataset root (any ESI reader).

Each input becomes a deterministic sequence of :class:`Item` (cheap pointers, made slice by slice: an archive
of millions of records holds no million objects for them) and a function that turns a slice of items into
preprocessed windows plus reject rows, one bad record never stopping its neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
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


class LazyItems(Sequence):
    """``n`` items made on demand by ``make(i)``; slicing makes only the slice (one part at a time)."""

    def __init__(self, n: int, make: Callable[[int], Item]) -> None:
        self._n, self._make = int(n), make

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(self._n))]
        if not -self._n <= index < self._n:
            raise IndexError(f"item {index} out of range 0..{self._n - 1}")
        return self._make(index % self._n)


@dataclass
class Input:
    """An input of ``esi score``: kind (store | wfdb | <source>), items, and how to read windows of them."""

    kind: str
    path: Path
    items: Sequence[Item]
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
        ids, sources, paths = (m[c].to_numpy() for c in ("record_id", "source", "path"))

        def store_item(i: int) -> Item:
            return Item(str(ids[i]), str(sources[i]), str(paths[i] or ""), i)

        return Input("store", path, LazyItems(len(m), store_item), store=store, quarantined=quarantined)
    if source and source not in SOURCES:
        raise ConfigError(f"--source {source!r}: known sources are {', '.join(SOURCES)}")
    reader = get_reader(source or "wfdb")
    refs = reader.list_refs(path)

    def ref_item(i: int) -> Item:
        return Item(refs[i].record_id, refs[i].source, str(refs[i].path), refs[i])

    return Input(source or "wfdb", path, LazyItems(len(refs), ref_item), reader=reader)


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
