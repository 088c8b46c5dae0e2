"""Stores written directly from numpy arrays (the layout of esi.data.prepare), for fault injection.

``synth_signals`` draws plausible 12-lead ECGs fast: a frontal/horizontal heart vector made of Gaussian
P-QRS-T waves per beat, projected onto the 12 leads (so the limb leads obey Einthoven/Goldberger), plus
small noise. ``write_store`` writes header.json, manifest.parquet and float16 shards like prepare does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from esi.data.record import LEADS
from esi.data.store import write_store as esi_write_store

# Wave centre (fraction of the beat), width (s) and amplitudes along x (lead I), y (aVF-ish) and z (V2-ish).
_WAVES = (  # (centre, width_s, ax, ay, az)
    (0.15, 0.020, 0.08, 0.12, 0.03),  # P
    (0.31, 0.008, -0.05, -0.08, 0.30),  # Q
    (0.33, 0.010, 0.80, 1.10, -0.90),  # R
    (0.355, 0.010, -0.15, -0.25, 0.60),  # S
    (0.60, 0.050, 0.20, 0.25, -0.20),  # T
)


def synth_signals(n: int, n_samples: int = 5000, fs: float = 500.0, seed: int = 0) -> np.ndarray:
    """``n`` plausible 12-lead ECGs (n, 12, n_samples) float32 in mV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples, dtype=np.float32) / fs
    rr = rng.uniform(0.6, 1.1, size=(n, 1)).astype(np.float32)  # 55-100 bpm
    phase = ((t[None, :] + rng.uniform(0, 1, size=(n, 1))) % rr) / rr
    scale = rng.uniform(0.6, 1.4, size=(n, 3)).astype(np.float32)
    vec = np.zeros((n, 3, n_samples), np.float32)
    for centre, width, ax, ay, az in _WAVES:
        g = np.exp(-0.5 * ((phase - centre) * rr / width) ** 2).astype(np.float32)
        vec += g[:, None, :] * (np.array([ax, ay, az], np.float32)[None, :, None] * scale[:, :, None])
    x, y, z = vec[:, 0], vec[:, 1], vec[:, 2]
    lead_i = x
    lead_ii = 0.5 * x + 0.866 * y
    lead_iii = lead_ii - lead_i
    limb = [lead_i, lead_ii, lead_iii, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    angles = np.deg2rad([-20, 0, 20, 45, 70, 90])  # V1..V6 in the horizontal plane (x, z)
    chest = [np.cos(a) * x * 0.8 + np.sin(np.pi / 2 - a) * z for a in angles]
    sig = np.stack(limb + chest, axis=1)
    sig += rng.normal(0, 0.01, size=sig.shape).astype(np.float32)
    return sig.astype(np.float32)


def manifest_rows(n: int, *, source: str = "ptbxl", seed: int = 0, prefix: str | None = None
                  ) -> list[dict[str, Any]]:
    """Clean manifest rows like prepare writes for PTB-XL (folds, subjects, SCP labels)."""
    rng = np.random.default_rng(seed)
    prefix = prefix or source
    return [{
        "record_id": f"{prefix}/{i + 1:05d}", "source": source, "subject_id": str(1000 + i // 2),
        "age": float(rng.integers(18, 90)), "sex": "M" if i % 2 else "F", "fold": int(i % 10 + 1),
        "label_system": "scp", "labels": json.dumps({"NORM": 100.0}), "conditions": json.dumps({"norm": 1.0}),
        "report": "sinus rhythm", "path": f"records500/{i:05d}_hr", "original_fs": 500.0,
        "original_n_samples": 5000, "window": 0, "padded_samples": 0, "nan_fraction": 0.0,
        "nan_filled": False, "unmapped": "[]",
    } for i in range(n)]


def write_store(path: str | Path, signals: np.ndarray | Iterable[np.ndarray],
                rows: Sequence[dict[str, Any]], *, fs: int = 500, leads: Sequence[str] = LEADS,
                shard_size: int = 1000, header: dict[str, Any] | None = None) -> Path:
    """Write a complete store (esi.data.store.write_store with this module's argument order)."""
    return esi_write_store(path, rows, signals, fs=fs, leads=leads, shard_size=shard_size, header=header)


@pytest.fixture(scope="session")
def storekit() -> SimpleNamespace:
    """The helpers of this module (test modules cannot import a conftest): synth, rows, write."""
    return SimpleNamespace(synth=synth_signals, rows=manifest_rows, write=write_store)


@pytest.fixture(scope="session")
def clean_signals() -> np.ndarray:
    """20 clean synthetic records."""
    return synth_signals(20, seed=1)


@pytest.fixture()
def make_store(tmp_path: Path, clean_signals: np.ndarray):
    """Factory: make_store(name, signals=None, rows=None, **write_store kwargs) -> store path."""

    def _make(name: str = "store", signals: np.ndarray | None = None, rows: list[dict] | None = None,
              **kwargs: Any) -> Path:
        sig = clean_signals.copy() if signals is None else signals
        rows = rows if rows is not None else manifest_rows(len(sig))
        return write_store(tmp_path / name, sig, rows, **kwargs)

    return _make
