"""Helpers of the serving tests (importable from the test modules: pytest puts this folder on sys.path)."""

from __future__ import annotations

import socket

import numpy as np


def ecg_batch(n: int, samples: int = 5000, seed: int = 0) -> np.ndarray:
    """(n, 12, samples) float32 ECG-like signals in mV (a 1.2 Hz beat train plus noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 500.0
    beat = np.exp(-((t % 0.83) - 0.3) ** 2 / 0.0004)
    gains = rng.uniform(0.3, 1.5, size=(n, 12, 1))
    return (gains * beat + 0.05 * rng.standard_normal((n, 12, samples))).astype(np.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
