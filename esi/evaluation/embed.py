"""Embeddings of store records, computed once per (model, store, split, segment) and cached on disk.

Two kinds: ``embedding`` (the model's L2-normalised contrastive ECG embedding, for zero-shot and
identification) and ``features`` (pooled encoder features, for the linear probe). The cache key is a digest of
the model weights + config, the store's identity, the row indices and the segment spec, so a retrained model
or a rebuilt store never reuses stale vectors. Files are written atomically (npz).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.errors import EvaluationError

if TYPE_CHECKING:
    import torch

    from esi.data.store import EcgStore

log = logging.getLogger(__name__)

KINDS = ("embedding", "features")


@dataclass(frozen=True)
class Segment:
    """A crop of each stored window: ``length_s`` seconds from ``start_s``.

    ``fit``: 'crop' feeds the crop as is (encoders that pool over time accept any length), 'pad' zero-pads it
    back to the store length (for encoders that need a fixed input length).
    """

    start_s: float = 0.0
    length_s: float | None = None
    fit: str = "crop"

    def key(self) -> str:
        return (
            f"{self.start_s:g}:{self.length_s if self.length_s is None else f'{self.length_s:g}'}:{self.fit}"
        )

    def apply(self, x: np.ndarray, fs: int) -> np.ndarray:
        """Crop (and pad) a batch (B, 12, T)."""
        if self.length_s is None and self.start_s == 0:
            return x
        start = int(round(self.start_s * fs))
        length = x.shape[-1] - start if self.length_s is None else int(round(self.length_s * fs))
        if start < 0 or start + length > x.shape[-1]:
            raise EvaluationError(
                f"segment {self.start_s:g}+{self.length_s} s does not fit a {x.shape[-1] / fs:g} s window"
            )
        out = x[..., start : start + length]
        if self.fit == "pad":
            out = np.concatenate([out, np.zeros(x.shape[:-1] + (x.shape[-1] - length,), x.dtype)], axis=-1)
        return out


FULL = Segment()


def model_digest(model: Any) -> str:
    """sha256 of the model's config and weights (identifies the exact model whatever its file name)."""
    cached = getattr(model, "_esi_eval_digest", None)
    if cached:
        return cached
    import torch

    h = hashlib.sha256()
    try:
        config = model.config_dict()
    except Exception:  # a model without config_dict is identified by its weights alone
        config = {"class": type(model).__name__}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest = h.hexdigest()[:20]
    try:
        model._esi_eval_digest = digest  # weights do not change during an evaluation
    except Exception:  # pragma: no cover - a frozen object
        pass
    return digest


def store_identity(store: EcgStore) -> str:
    """A digest of the store's location and header (rebuilt stores get new headers)."""
    payload = {"path": str(Path(store.path).resolve()), "header": store.header}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_key(model: Any, store: EcgStore, indices: np.ndarray, kind: str, segment: Segment) -> str:
    h = hashlib.sha256()
    h.update(model_digest(model).encode())
    h.update(store_identity(store).encode())
    h.update(np.asarray(indices, np.int64).tobytes())
    h.update(kind.encode() + segment.key().encode())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    from esi.settings import get_settings

    return get_settings().home / "cache" / "embeddings"


def _device(model: Any) -> torch.device:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def compute(
    model: Any,
    store: EcgStore,
    indices: Sequence[int],
    *,
    kind: str = "embedding",
    segment: Segment = FULL,
    batch_size: int = 64,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[np.ndarray, float]:
    """Encode store rows; returns (array (n, D) float32, embeddings per second). No caching."""
    import torch
    from tqdm.auto import tqdm

    if kind not in KINDS:
        raise EvaluationError(f"unknown embedding kind {kind!r}; use one of {', '.join(KINDS)}")
    fn = model.encode_ecg if kind == "embedding" else model.ecg_features
    idx = np.asarray(indices, dtype=np.int64)
    device = _device(model)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(idx),
        desc=desc or f"encode {kind}",
        unit="ecg",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        with torch.no_grad():
            for _, sig in store.iter_batches(batch_size, idx):
                x = torch.from_numpy(np.ascontiguousarray(segment.apply(sig, store.fs))).to(device)
                z = fn(x)
                out.append(z.detach().float().cpu().numpy())
                bar.update(len(sig))
    finally:
        bar.close()
        if was_training:
            model.train()
    elapsed = max(time.perf_counter() - t0, 1e-9)
    rate = len(idx) / elapsed
    if len(idx):
        log.info(
            "encoded %d records (%s, segment %s) in %.1f s: %.1f embeddings/s",
            len(idx),
            kind,
            segment.key(),
            elapsed,
            rate,
        )
    arr = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    if not np.isfinite(arr).all():
        raise EvaluationError(f"the model produced non-finite {kind} values; check the checkpoint and inputs")
    return arr.astype(np.float32), rate


class EmbeddingCache:
    """Disk cache of embeddings (npz per key) + throughput bookkeeping for the report."""

    def __init__(self, directory: str | Path | None = None, *, enabled: bool = True) -> None:
        self.dir = Path(directory) if directory else default_cache_dir()
        self.enabled = enabled
        self.stats: dict[str, float] = {"computed": 0, "cached": 0, "seconds": 0.0}

    def get(
        self,
        model: Any,
        store: EcgStore,
        indices: Sequence[int],
        *,
        kind: str = "embedding",
        segment: Segment = FULL,
        batch_size: int = 64,
        progress: bool = True,
        desc: str | None = None,
    ) -> np.ndarray:
        """Cached embeddings of ``indices`` (computed and stored on a miss)."""
        from esi.data.store import atomic_write_bytes

        idx = np.asarray(indices, dtype=np.int64)
        key = cache_key(model, store, idx, kind, segment)
        path = self.dir / f"{kind}-{key}.npz"
        if self.enabled and path.exists():
            try:
                with np.load(path) as data:
                    if np.array_equal(data["indices"], idx):
                        self.stats["cached"] += len(idx)
                        return data["values"]
            except Exception as exc:  # a damaged cache file is recomputed, never trusted
                log.warning("ignoring unreadable embedding cache %s (%s)", path, exc)
        t0 = time.perf_counter()
        values, _ = compute(
            model, store, idx, kind=kind, segment=segment, batch_size=batch_size, progress=progress, desc=desc
        )
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["computed"] += len(idx)
        if self.enabled:
            buf = io.BytesIO()
            np.savez(buf, values=values, indices=idx)
            atomic_write_bytes(path, buf.getvalue())
        return values

    @property
    def embeddings_per_s(self) -> float | None:
        """Throughput over the computed (not cached) embeddings; None when everything came from the cache."""
        if not self.stats["computed"] or self.stats["seconds"] <= 0:
            return None
        return self.stats["computed"] / self.stats["seconds"]
