"""Fixtures of the evaluation tests: small stores written in the store format, without the data pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from esi.data.store import write_store as esi_write_store

# One SCP statement per superclass, so every PTB-XL task has labels.
CODES = ("NORM", "IMI", "NDT", "IRBBB", "LVH")


def write_store(path: Path, signals: np.ndarray, rows: list[dict], fs: int = 500) -> Path:
    """Write a complete store (header, manifest, one shard) from (N, 12, T) signals and manifest rows."""
    base = {"source": "ptbxl", "age": 60.0, "sex": "M", "label_system": "scp"}
    return esi_write_store(path, [{**base, **r} for r in rows], signals, fs=fs, shard_size=max(1, len(rows)),
                           header={"test_id": str(path)})


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
