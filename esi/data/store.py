"""The on-disk store: ``header.json`` + ``manifest.parquet`` + fixed-shape float16 signal shards (mem-mapped).

Layout::

    STORE/
      header.json            schema version, fs, n_samples, leads, dtype, preprocessing, plan, counts
      manifest.parquet       one row per stored window (see MANIFEST_COLUMNS); row i <-> store index i
      rejects.parquet        records that could not be read: record_id, path, reason
      quarantine.parquet     optional, written by validation: record_id, failed expectations
      shards/shard-00000/    signals.npy (N, 12, n_samples) float16, manifest.parquet, rejects.parquet

This module is the reader (:class:`EcgStore`). The constants and atomic writes live in esi.data.layout, the
shard files in esi.data.shards, ``write_store`` in esi.data.store_writer, the converter in esi.data.prepare;
the names callers use are re-exported here. Every file is written to a temporary name first and renamed, so
a crash never leaves a half-written file that looks complete, and every file gets the same permission mode
(0666 less the umask). Readers refuse a store of another schema version, and any unreadable part of a store
(header, plan, manifest, shard) is a StoreError that names the file, says what is wrong and how to repair it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.data.layout import (  # noqa: F401  (re-exported: esi.data.store is where callers import them)
    FILE_MODE,
    MANIFEST_COLUMNS,
    REJECT_COLUMNS,
    SCHEMA_VERSION,
    SIGNAL_DTYPE,
    STORE_FORMAT,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    is_esi_store,
    shard_dir,
)
from esi.data.record import LEADS
from esi.data.shards import read_npy_header
from esi.data.store_writer import write_store  # noqa: F401  (re-exported)
from esi.errors import DatasetNotFoundError, StoreError

if TYPE_CHECKING:
    import pandas as pd


class EcgStore:
    """Read access to a store. ``store.signal(i)`` is the (12, n_samples) float32 window of manifest row i."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        header_path = self.path / "header.json"
        if not header_path.exists():
            raise DatasetNotFoundError(
                f"no ESI store at {self.path} (header.json missing); create one with "
                "'esi data prepare --source SOURCE --root DIR --out STORE'")
        self.header: dict[str, Any] = read_header(self.path)
        version = self.header.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, this ESI reads "
                             f"{SCHEMA_VERSION}; file: {header_path}; fix: {repair_hint(self, overwrite=True)}")
        if not self.header.get("complete"):
            raise StoreError(f"store {self.path} is incomplete ({self.header.get('shards_done', 0)} of "
                             f"{self.header.get('n_shards', '?')} shards); fix: {repair_hint(self)} "
                             "(or re-run the same command) to finish it")
        plan = self.path / "plan.json"
        if plan.exists():
            _read_json(plan, "plan.json", self)
        if not (self.path / "manifest.parquet").is_file():
            raise StoreError(f"store {self.path}: manifest.parquet is missing; file: "
                             f"{self.path / 'manifest.parquet'}; fix: {repair_hint(self)}")
        for k in range(int(self.header.get("n_shards") or 0)):
            self._check_shard(shard_dir(self.path, k) / "signals.npy")
        self._manifest: pd.DataFrame | None = None
        self._shards: dict[int, np.ndarray] = {}
        self._locs: np.ndarray | None = None

    def _check_shard(self, sig: Path) -> None:
        """A shard file exists and its .npy header promises (n, leads, samples) that its size holds: a cheap
        check (a few hundred bytes read) that finds a missing, foreign or truncated shard at open."""
        try:
            shape, dtype, offset = read_npy_header(sig)
        except FileNotFoundError:
            raise StoreError(f"store {self.path}: shard file {sig} is missing; fix: {repair_hint(self)}") from None
        except (ValueError, OSError, SyntaxError) as exc:
            raise StoreError(f"store {self.path}: shard file {sig} is not a NumPy array file ({exc}); fix: "
                             f"{repair_hint(self)}") from exc
        need = offset + int(np.prod(shape)) * dtype.itemsize
        if len(shape) != 3 or sig.stat().st_size < need:
            raise StoreError(f"store {self.path}: shard file {sig} is truncated or malformed (shape {shape}, "
                             f"{sig.stat().st_size} of {need} bytes); fix: {repair_hint(self)}")

    def require_records(self, what: str) -> None:
        """Raise StoreError when the store holds no records (``what`` needs some); reads the manifest, so a
        damaged one is reported here too."""
        if len(self.manifest) == 0:
            n_rej = self.header.get("n_rejects", 0)
            raise StoreError(f"store {self.path} is empty: 0 records ({n_rej} rejected at preparation), nothing "
                             f"for {what}; fix: see why with 'esi data info {self.path}' and prepare the data "
                             "again")

    # --- metadata -------------------------------------------------------------------------------------
    @property
    def fs(self) -> int:
        return int(self.header["fs"])

    @property
    def n_samples(self) -> int:
        return int(self.header["n_samples"])

    @property
    def leads(self) -> list[str]:
        return list(self.header["leads"])

    @property
    def manifest(self) -> pd.DataFrame:
        """The manifest (cached). Columns 'labels' and 'conditions' hold JSON strings; see :meth:`labels`."""
        if self._manifest is None:
            manifest = _read_parquet(self.path / "manifest.parquet", self)
            missing = [c for c in ("record_id", "shard", "row") if c not in manifest.columns]
            if missing:
                raise StoreError(f"store {self.path}: manifest.parquet lacks column(s) {', '.join(missing)}; "
                                 f"file: {self.path / 'manifest.parquet'}; fix: {repair_hint(self)}")
            self._manifest = manifest
        return self._manifest

    def __len__(self) -> int:
        return int(self.header["n_records"])

    def rejects(self) -> pd.DataFrame:
        """Records that failed to read or preprocess (record_id, path, reason)."""
        import pandas as pd

        path = self.path / "rejects.parquet"
        if path.exists():
            return _read_parquet(path, self)
        return pd.DataFrame(columns=["record_id", "path", "reason"])

    def labels(self, i: int) -> dict[str, float]:
        return json.loads(self.manifest["labels"].iat[i])

    def conditions(self, i: int) -> dict[str, float]:
        return json.loads(self.manifest["conditions"].iat[i])

    # --- quarantine (written by validation, honoured by datasets) ---------------------------------------
    @property
    def quarantine_path(self) -> Path:
        return self.path / "quarantine.parquet"

    def quarantined_ids(self, path: str | Path | None = None) -> set[str]:
        """Record ids in the quarantine list (the store's own, or ``path``); empty when there is none."""

        qpath = Path(path) if path else self.quarantine_path
        if not qpath.exists():
            if path:
                raise DatasetNotFoundError(f"quarantine list {qpath} does not exist")
            return set()
        frame = _read_parquet(qpath, self, fix="run 'esi validate' again to rewrite it")
        if "record_id" not in frame.columns:
            raise StoreError(f"quarantine list {qpath} has no record_id column; fix: run 'esi validate' again")
        return set(frame["record_id"].astype(str))

    def indices(self, *, exclude_quarantined: bool = True, folds: Sequence[int] | None = None,
                quarantine: str | Path | None = None) -> np.ndarray:
        """Manifest row indices, optionally restricted to folds and without quarantined records."""
        m = self.manifest
        keep = np.ones(len(m), dtype=bool)
        if folds is not None:
            keep &= m["fold"].isin(list(folds)).to_numpy()
        if exclude_quarantined:
            bad = self.quarantined_ids(quarantine)
            if bad:
                keep &= ~m["record_id"].astype(str).isin(bad).to_numpy()
        return np.flatnonzero(keep)

    # --- signals --------------------------------------------------------------------------------------
    def _shard(self, shard: int) -> np.ndarray:
        arr = self._shards.get(shard)
        if arr is None:
            path = shard_dir(self.path, shard) / "signals.npy"
            try:
                arr = np.load(path, mmap_mode="r")
            except FileNotFoundError:
                raise StoreError(f"store {self.path}: shard file {path} is missing; fix: "
                                 f"{repair_hint(self)}") from None
            except (ValueError, OSError) as exc:  # a truncated or overwritten .npy
                raise StoreError(f"store {self.path}: shard file {path} is unreadable ({exc}); fix: "
                                 f"{repair_hint(self)}") from exc
            if arr.ndim != 3:
                raise StoreError(f"store {self.path}: shard file {path} holds an array of shape {arr.shape}, "
                                 f"not (records, leads, samples); fix: {repair_hint(self)}")
            self._shards[shard] = arr
        return arr

    def _loc(self, i: int) -> tuple[int, int]:
        if self._locs is None:
            self._locs = self.manifest[["shard", "row"]].to_numpy(dtype=np.int64)
        shard, row = self._locs[i]
        return int(shard), int(row)

    def signal(self, i: int) -> np.ndarray:
        """The (12, n_samples) float32 signal of manifest row ``i`` in mV."""
        if not 0 <= i < len(self):
            raise IndexError(f"store index {i} out of range 0..{len(self) - 1}")
        shard, row = self._loc(i)
        return np.asarray(self._shard(shard)[row], dtype=np.float32)

    def signals(self, indices: Sequence[int]) -> np.ndarray:
        """Stack of signals (len(indices), 12, n_samples) float32."""
        return np.stack([self.signal(int(i)) for i in indices]) if len(indices) else np.zeros(
            (0, len(LEADS), self.n_samples), np.float32)

    def iter_batches(self, batch_size: int = 256, indices: Sequence[int] | None = None):
        """Yield (indices, signals) batches in the given order, with bounded memory.

        Rows that are contiguous within one shard are read as one slice of the memory map (much faster than
        row by row), and a shard's map is released once the iteration has moved past it, so resident memory
        stays flat however large the store is.
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if self._locs is None:
            self._locs = self.manifest[["shard", "row"]].to_numpy(dtype=np.int64)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            locs = self._locs[chunk]
            parts, k = [], 0
            while k < len(chunk):
                shard, row = locs[k]
                j = k + 1
                while j < len(chunk) and locs[j, 0] == shard and locs[j, 1] == locs[j - 1, 1] + 1:
                    j += 1
                # the shard's own shape, not the header's: validation must see a malformed shard as it is
                parts.append(np.asarray(self._shard(int(shard))[row:row + (j - k)], dtype=np.float32))
                k = j
            out = np.concatenate(parts) if parts else np.zeros((0, len(LEADS), self.n_samples), np.float32)
            if len(chunk) and start + batch_size < len(idx):
                nxt = int(self._locs[idx[start + batch_size], 0])
                for done in [sh for sh in self._shards if sh != nxt and sh not in set(locs[:, 0].tolist())]:
                    del self._shards[done]
            yield chunk, out

    def __getstate__(self) -> dict:
        # Memory maps are reopened lazily in each worker process.
        state = dict(self.__dict__)
        state["_shards"] = {}
        return state


def open_store(path: str | Path) -> EcgStore:
    """Open a store (raises DatasetNotFoundError / StoreError with the fix)."""
    return EcgStore(path)


def repair_hint(store: EcgStore | Path, *, overwrite: bool = False) -> str:
    """The command that repairs a store: the same prepare with --resume (or --overwrite to rebuild it)."""
    path = store.path if isinstance(store, EcgStore) else Path(store)
    plan = (store.header.get("plan") if isinstance(store, EcgStore) and isinstance(store.header, dict)
            else None) or {}
    source, root = plan.get("source", "SOURCE"), plan.get("root", "ROOT")
    cmd = f"esi data prepare --source {source} --root {root} --out {path}"
    if overwrite:
        return f"'{cmd} --overwrite' rebuilds it"
    return f"'{cmd} --resume' repairs it (or '--overwrite' rebuilds it)"


def _read_json(path: Path, name: str, store: EcgStore | Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise StoreError(f"store {path.parent}: {name} is unreadable ({exc}); file: {path}; fix: "
                         f"{repair_hint(store, overwrite=True)}") from exc
    if not isinstance(data, dict):
        raise StoreError(f"store {path.parent}: {name} does not hold a JSON object; file: {path}; fix: "
                         f"{repair_hint(store, overwrite=True)}")
    return data


def read_header(path: str | Path) -> dict[str, Any]:
    """The header.json of a store folder (StoreError when unreadable)."""
    path = Path(path)
    return _read_json(path / "header.json", "header.json", path)


def _read_parquet(path: Path, store: EcgStore, fix: str | None = None) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise StoreError(f"store {store.path}: {path.name} is missing; file: {path}; fix: "
                         f"{fix or repair_hint(store)}") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for truncated or foreign files
        raise StoreError(f"store {store.path}: {path.name} is unreadable (truncated or not parquet: "
                         f"{type(exc).__name__}: {exc}); file: {path}; fix: {fix or repair_hint(store)}") from exc
