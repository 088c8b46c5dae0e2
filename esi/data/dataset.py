"""A torch Dataset over a store that honours the quarantine list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from esi.data.store import EcgStore


class EcgStoreDataset(Dataset):
    """Items are dicts: ``signal`` (12, n) float32 tensor, ``index`` (store row) and ``record_id``.

    Args:
        store: an EcgStore or its path.
        indices: store rows to use (default: all); quarantined rows are removed from them.
        exclude_quarantined: drop records listed in the quarantine list (default True).
        quarantine: a quarantine parquet other than the store's own.
        transform: optional callable applied to the numpy signal (augmentation).
    """

    def __init__(self, store: EcgStore | str | Path, indices: Sequence[int] | None = None, *,
                 exclude_quarantined: bool = True, quarantine: str | Path | None = None,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.store = store if isinstance(store, EcgStore) else EcgStore(store)
        allowed = self.store.indices(exclude_quarantined=exclude_quarantined, quarantine=quarantine)
        if indices is not None:
            allowed = np.intersect1d(np.asarray(indices, dtype=np.int64), allowed)
        self.indices = allowed
        self.transform = transform
        self._ids = self.store.manifest["record_id"].astype(str).to_numpy()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = int(self.indices[item])
        signal = self.store.signal(index)
        if self.transform is not None:
            signal = self.transform(signal)
        return {"signal": torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)), "index": index,
                "record_id": self._ids[index]}
