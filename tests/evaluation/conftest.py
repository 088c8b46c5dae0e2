"""Fixtures of the evaluation tests: small stores written in the store format, without the data pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esi.data.record import LEADS
from esi.data.store import SCHEMA_VERSION

# One SCP statement per superclass, so every PTB-XL task has labels.
CODES = ("NORM", "IMI", "NDT", "IRBBB", "LVH")


def write_store(path: Path, signals: np.ndarray, rows: list[dict], fs: int = 500) -> Path:
    """Write a complete store (header, manifest, one shard) from (N, 12, T) signals and manifest rows."""
    shard = path / "shards" / "shard-00000"
    shard.mkdir(parents=True)
    np.save(shard / "signals.npy", signals.astype(np.float16))
    base = {
        "source": "ptbxl",
        "age": 60.0,
        "sex": "M",
        "label_system": "scp",
        "conditions": "{}",
        "report": "",
        "path": "",
        "original_fs": float(fs),
        "original_n_samples": signals.shape[-1],
        "window": 0,
        "padded_samples": 0,
        "nan_fraction": 0.0,
        "nan_filled": False,
        "shard": 0,
    }
    manifest = pd.DataFrame([{**base, **r, "row": i} for i, r in enumerate(rows)])
    manifest.to_parquet(path / "manifest.parquet", index=False)
    header = {
        "schema_version": SCHEMA_VERSION,
        "fs": fs,
        "n_samples": int(signals.shape[-1]),
        "duration_s": signals.shape[-1] / fs,
        "leads": list(LEADS),
        "dtype": "float16",
        "units": "mV",
        "n_records": len(rows),
        "n_shards": 1,
        "shards_done": 1,
        "complete": True,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "test_id": str(path),
    }
    (path / "header.json").write_text(json.dumps(header))
    return path


def make_labelled_store(
    path: Path,
    *,
    subjects: int = 30,
    per_subject: int = 2,
    n_samples: int = 500,
    seed: int = 0,
    folds: bool = True,
) -> Path:
    """Records whose waveform depends on their class and on their subject (so both can be learned)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 500.0
    subject_sig = rng.normal(size=(subjects, 12, 1)) * 0.5
    sigs, rows = [], []
    for s in range(subjects):
        for r in range(per_subject):
            k = int(rng.integers(len(CODES)))
            x = np.sin(2 * np.pi * (1 + k) * t)[None, :] * (0.2 + 0.1 * k) + subject_sig[s]
            x = x + rng.normal(scale=0.05, size=(12, n_samples))
            sigs.append(x)
            rows.append(
                {
                    "record_id": f"ptbxl/{s * per_subject + r + 1}",
                    "subject_id": f"p{s}",
                    "fold": (s % 10) + 1 if folds else None,
                    "labels": json.dumps({CODES[k]: 100.0, "SR": 0.0}),
                }
            )
    return write_store(path, np.stack(sigs), rows)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """The test machine is shared: one intra-op thread keeps the tiny models from oversubscribing it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def labelled_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_labelled_store(tmp_path_factory.mktemp("evalstore") / "store")


@pytest.fixture
def store_factory():
    """The store writers, for tests that need a store of their own shape."""
    return {"write": write_store, "labelled": make_labelled_store}
