"""Reference ECG embeddings saved with a registered model: the baseline that drift checks compare against."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def pretraining_records(store: Any, folds: list[int] | None, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` store indices of the records pretraining used (its folds, quarantine excluded), sorted.

    An evenly spread random subset, fixed by ``seed``, so re-registering draws the same records.
    """
    idx = store.indices(folds=folds)
    if len(idx) > n:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))
    return idx


def reference_embeddings(model: Any, store_path: str | Path, folds: list[int] | None, n: int, *,
                         batch_size: int = 64, progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed up to ``n`` pretraining records with ``model``; returns (embeddings (k, D), what was embedded)."""
    import torch
    from tqdm import tqdm

    from esi.data.store import open_store

    store = open_store(store_path)
    idx = pretraining_records(store, folds, n)
    model.eval()
    out = []
    t0 = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(idx), desc="reference embeddings", unit="rec",
                                      disable=not progress) as bar:
        for _, signals in store.iter_batches(batch_size, idx):
            out.append(model.encode_ecg(torch.from_numpy(signals)).float().numpy())
            bar.update(len(signals))
    dt = time.perf_counter() - t0
    emb = np.concatenate(out) if out else np.zeros((0, int(model.config.embed_dim)), np.float32)
    log.info("reference embeddings: %d records of %s in %.1f s (%.0f rec/s)", len(emb), store.path, dt,
             len(emb) / dt if dt else 0.0)
    return emb, {"records": int(len(emb)), "store": str(store.path), "folds": folds, "seconds": round(dt, 2)}
