"""Drift of scored embeddings against the model's reference embeddings (numpy only).

Two figures, both on L2-normalised embeddings:

* MMD^2 with an RBF kernel (median-heuristic bandwidth of the pooled sample; the biased estimate, as in
  :func:`esi.evaluation.metrics.mmd_rbf`) and its permutation p-value: the share of random relabellings of the
  pooled sample whose MMD^2 reaches the observed one;
* the share of scored records that are "far from every reference neighbour": whose nearest reference
  embedding is farther (cosine distance) than the ``quantile`` of the reference's own leave-one-out
  nearest-neighbour distances. About ``1 - quantile`` of records from the reference distribution are far.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x[np.sort(rng.choice(len(x), n, replace=False))] if len(x) > n else x


def mmd_permutation(x: np.ndarray, y: np.ndarray, *, permutations: int = 200, max_points: int = 1000,
                    seed: int = 0) -> dict[str, float]:
    """MMD^2 (RBF, median heuristic) between two sets and its permutation p-value."""
    rng = np.random.default_rng(seed)
    x, y = _subsample(_normalise(x), max_points, rng), _subsample(_normalise(y), max_points, rng)
    z = np.concatenate([x, y])
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    off = np.sqrt(d2[np.triu_indices(len(z), k=1)])
    bandwidth = float(np.median(off)) if off.size and np.median(off) > 0 else 1.0
    k = np.exp(-d2 / (2 * bandwidth**2))
    n, m = len(x), len(y)

    total = float(k.sum())

    def stat(mask: np.ndarray) -> float:
        a = mask.astype(np.float64)
        ka = k @ a
        aa = float(a @ ka)
        ab = float(ka.sum()) - aa
        bb = total - aa - 2 * ab
        return aa / n**2 + bb / m**2 - 2 * ab / (n * m)

    first = np.zeros(n + m, dtype=bool)
    first[:n] = True
    observed = stat(first)
    hits = sum(stat(rng.permutation(first)) >= observed - 1e-12 for _ in range(permutations))
    return {"mmd2": max(observed, 0.0), "p_value": (hits + 1) / (permutations + 1), "bandwidth": bandwidth,
            "permutations": int(permutations), "n_scored": int(n), "n_reference": int(m)}


def far_share(x: np.ndarray, reference: np.ndarray, *, quantile: float = 0.99, max_reference: int = 5000,
              seed: int = 0) -> dict[str, float]:
    """Share of ``x`` whose nearest reference neighbour is farther than the reference's own NN-distance quantile."""
    rng = np.random.default_rng(seed)
    ref = _subsample(_normalise(reference), max_reference, rng)
    x = _normalise(x)
    if len(ref) < 2:
        return {"far_share": float("nan"), "threshold": float("nan"), "quantile": quantile}
    rr = 1.0 - ref @ ref.T
    np.fill_diagonal(rr, np.inf)
    threshold = float(np.quantile(rr.min(axis=1), quantile))
    nearest = np.concatenate([(1.0 - x[s:s + 4096] @ ref.T).min(axis=1) for s in range(0, len(x), 4096)]) \
        if len(x) else np.zeros(0)
    share = float((nearest > threshold).mean()) if len(nearest) else float("nan")
    return {"far_share": share, "threshold": threshold, "quantile": quantile,
            "median_nn_distance": float(np.median(nearest)) if len(nearest) else float("nan")}


def drift_report(scored: np.ndarray, reference: np.ndarray | None, *, permutations: int = 200,
                 seed: int = 0) -> dict[str, Any]:
    """The drift section of a score summary; says so when there is no reference."""
    if reference is None or len(reference) == 0:
        return {"available": False, "reason": "the model has no reference embeddings (a bare checkpoint, "
                                              "or a version registered without a reference set); drift was "
                                              "not computed"}
    if len(scored) < 2:
        return {"available": False, "reason": f"only {len(scored)} scored record(s): too few for a drift test"}
    if scored.shape[1] != reference.shape[1]:
        return {"available": False, "reason": f"reference embeddings have width {reference.shape[1]}, the model "
                                              f"{scored.shape[1]}: the reference belongs to another model"}
    mmd = mmd_permutation(scored, reference, permutations=permutations, seed=seed)
    far = far_share(scored, reference, seed=seed)
    return {"available": True, "mmd2": mmd["mmd2"], "p_value": mmd["p_value"], "bandwidth": mmd["bandwidth"],
            "permutations": mmd["permutations"], "n_scored_sample": mmd["n_scored"],
            "n_reference_sample": mmd["n_reference"], "far_share": far["far_share"],
            "far_threshold": far["threshold"], "far_quantile": far["quantile"],
            "median_nn_distance": far["median_nn_distance"]}


class Reservoir:
    """A uniform sample of at most ``size`` rows from a stream (for drift on archives of any size)."""

    def __init__(self, size: int = 1000, seed: int = 0) -> None:
        self.size, self.seen = int(size), 0
        self.rng = np.random.default_rng(seed)
        self.rows: list[np.ndarray] = []

    def add(self, batch: np.ndarray) -> None:
        for row in np.asarray(batch):
            if len(self.rows) < self.size:
                self.rows.append(row)
            else:
                j = int(self.rng.integers(0, self.seen + 1))
                if j < self.size:
                    self.rows[j] = row
            self.seen += 1

    def array(self) -> np.ndarray:
        return np.stack(self.rows) if self.rows else np.zeros((0, 0), np.float32)
