"""The on-disk store: ``header.json`` + ``manifest.parquet`` + fixed-shape float16 signal shards (mem-mapped).

Layout::

    STORE/
      header.json            schema version, fs, n_samples, leads, dtype, preprocessing, plan, counts
      manifest.parquet       one row per stored window (see MANIFEST_COLUMNS); row i <-> store index i
      rejects.parquet        records that could not be read: record_id, path, reason
      quarantine.parquet     optional, written by validation: record_id, failed expectations
      shards/shard-00000/    signals.npy (N, 12, n_samples) float16, manifest.parquet, rejects.parquet

Every file is written to a temporary name first and renamed, so a crash never leaves a half-written file
that looks complete. Readers refuse a store of another schema version.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.data.record import LEADS
from esi.errors import DatasetNotFoundError, StoreError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
SIGNAL_DTYPE = "float16"
MANIFEST_COLUMNS = (
    "record_id", "source", "subject_id", "age", "sex", "fold", "label_system", "labels", "conditions",
    "report", "path", "original_fs", "original_n_samples", "window", "padded_samples", "nan_fraction",
    "nan_filled", "shard", "row",
)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a DataFrame as parquet."""
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


class EcgStore:
    """Read access to a store. ``store.signal(i)`` is the (12, n_samples) float32 window of manifest row i."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        header_path = self.path / "header.json"
        if not header_path.exists():
            raise DatasetNotFoundError(
                f"no ESI store at {self.path} (header.json missing); create one with "
                "'esi data prepare --source SOURCE --root DIR --out STORE'")
        self.header: dict[str, Any] = json.loads(header_path.read_text())
        version = self.header.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, this ESI reads "
                             f"{SCHEMA_VERSION}; re-create it with 'esi data prepare'")
        if not self.header.get("complete"):
            raise StoreError(f"store {self.path} is incomplete ({self.header.get('shards_done', 0)} of "
                             f"{self.header.get('n_shards', '?')} shards); re-run the same "
                             "'esi data prepare' command to finish it")
        self._manifest: pd.DataFrame | None = None
        self._shards: dict[int, np.ndarray] = {}
        self._locs: np.ndarray | None = None

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
            import pandas as pd

            self._manifest = pd.read_parquet(self.path / "manifest.parquet")
        return self._manifest

    def __len__(self) -> int:
        return int(self.header["n_records"])

    def rejects(self) -> pd.DataFrame:
        """Records that failed to read or preprocess (record_id, path, reason)."""
        import pandas as pd

        path = self.path / "rejects.parquet"
        if path.exists():
            return pd.read_parquet(path)
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
        import pandas as pd

        qpath = Path(path) if path else self.quarantine_path
        if not qpath.exists():
            if path:
                raise DatasetNotFoundError(f"quarantine list {qpath} does not exist")
            return set()
        return set(pd.read_parquet(qpath, columns=["record_id"])["record_id"].astype(str))

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
            arr = np.load(self.path / "shards" / f"shard-{shard:05d}" / "signals.npy", mmap_mode="r")
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


_ROW_DEFAULTS: dict[str, Any] = {
    "source": "custom", "subject_id": None, "age": None, "sex": None, "fold": None, "label_system": "none",
    "labels": "{}", "conditions": "{}", "report": None, "path": "", "window": 0, "padded_samples": 0,
    "nan_fraction": 0.0, "nan_filled": False, "unmapped": "[]",
}


def write_store(path: str | Path, rows: Sequence[dict[str, Any]], signals: Any = None, *, fs: int = 500,
                n_samples: int | None = None, leads: Sequence[str] = LEADS, shard_size: int = 1000,
                header: dict[str, Any] | None = None) -> Path:
    """Write a complete store from manifest rows and signals that are already preprocessed.

    ``signals`` is one (N, leads, n) array, an iterable of per-shard arrays (streamed: a large store never
    sits in memory), or None for a manifest-only store (enough for captions and label tables). Missing
    manifest columns get neutral defaults; dict ``labels``/``conditions`` and list ``unmapped`` are stored as
    JSON. ``header`` overrides header fields. Each file is written atomically and header.json last, so a
    store is complete exactly when its header says so. ``prepare`` is the converter for real sources; this is
    for signals that exist in memory (benchmarks, tests, generated data).
    """
    import pandas as pd

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if signals is None:
        chunks: Any = []
    elif isinstance(signals, np.ndarray):
        chunks = [signals[k:k + shard_size] for k in range(0, len(signals), shard_size)]
    else:
        chunks = signals
    frames, start = [], 0
    for k, chunk in enumerate(chunks):
        chunk = np.asarray(chunk)
        n_samples = int(chunk.shape[2])
        d = path / "shards" / f"shard-{k:05d}"
        d.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, chunk.astype(SIGNAL_DTYPE))
        atomic_write_bytes(d / "signals.npy", buf.getvalue())
        part = _manifest_frame(rows[start:start + len(chunk)], fs, n_samples)
        part["shard"], part["row"] = k, np.arange(len(part))
        atomic_write_parquet(d / "manifest.parquet", part)
        frames.append(part)
        start += len(chunk)
    n_samples = int(n_samples or 5000)
    if signals is None:
        manifest = _manifest_frame(rows, fs, n_samples)
        manifest["shard"], manifest["row"] = 0, np.arange(len(manifest))
    else:
        if start != len(rows):
            raise StoreError(f"write_store: {start} signals but {len(rows)} manifest rows for {path}")
        manifest = pd.concat(frames, ignore_index=True) if frames else _manifest_frame([], fs, n_samples)
    atomic_write_parquet(path / "manifest.parquet", manifest)
    atomic_write_parquet(path / "rejects.parquet", pd.DataFrame(columns=["record_id", "path", "reason"]))
    head = {"schema_version": SCHEMA_VERSION, "fs": fs, "n_samples": n_samples, "duration_s": n_samples / fs,
            "leads": list(leads), "dtype": SIGNAL_DTYPE, "units": "mV", "preprocess": {}, "plan": {},
            "n_records": int(len(manifest)), "n_rejects": 0, "n_shards": len(frames),
            "shards_done": len(frames), "complete": True, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    head.update(header or {})
    atomic_write_json(path / "header.json", head)
    return path


def _manifest_frame(rows: Sequence[dict[str, Any]], fs: int, n_samples: int) -> pd.DataFrame:
    import pandas as pd

    out = []
    for r in rows:
        row = {**_ROW_DEFAULTS, "original_fs": float(fs), "original_n_samples": n_samples, **r}
        for key in ("labels", "conditions", "unmapped"):
            if not isinstance(row[key], str):
                row[key] = json.dumps(row[key], sort_keys=True)
        out.append(row)
    columns = [c for c in MANIFEST_COLUMNS if c not in ("shard", "row")] + ["unmapped"]
    extra = [c for r in out for c in r if c not in columns]
    return pd.DataFrame(out, columns=columns + list(dict.fromkeys(extra)))
