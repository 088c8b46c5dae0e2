"""``write_store``: a complete store from signals already in memory (generated data, benchmarks, tests).

``esi data prepare`` (esi.data.prepare) is the converter for real sources; this writes the same layout, each
file atomically and header.json last, from manifest rows and arrays that are already preprocessed.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.data.layout import (
    MANIFEST_COLUMNS,
    REJECT_COLUMNS,
    SCHEMA_VERSION,
    SIGNAL_DTYPE,
    STORE_FORMAT,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    shard_dir,
)
from esi.data.record import LEADS
from esi.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd

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
        d = shard_dir(path, k)
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
    atomic_write_parquet(path / "rejects.parquet", pd.DataFrame(columns=list(REJECT_COLUMNS)))
    head = {"format": STORE_FORMAT, "schema_version": SCHEMA_VERSION, "fs": fs, "n_samples": n_samples,
            "duration_s": n_samples / fs,
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
