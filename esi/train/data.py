"""Pretraining data: store records joined with their captions, tokenised once, augmented, sampled per rank.

Records come from :class:`esi.data.dataset.EcgStoreDataset`, so quarantined records are never seen.
Records without a caption: with ``missing_captions="error"`` (the default) the run stops and says how many
and how to fix it (caption the store again, or pass ``--skip-missing-captions``); with ``"skip"`` they are
left out and the count is logged. A silent skip is never an option.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from esi.errors import DataError, DatasetNotFoundError
from esi.train.checkpointing import atomic_torch_save
from esi.train.config import AugmentConfig

log = logging.getLogger(__name__)

TOKEN_CACHE_VERSION = 1
# Tokenising this fixed text puts the tokenizer's vocabulary into the cache key: another tokenizer with the
# same config name still gets its own cache.
_PROBE = ("Sinus rhythm with right bundle branch block; prolonged QRS (140 ms), rSR' in V1-V3. "
          "63-year-old male.")


# --- captions -------------------------------------------------------------------------------------
def load_captions(path: str | Path) -> dict[str, str]:
    """record_id -> caption from the captions parquet (columns record_id, caption; others are ignored)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"captions table {path} does not exist; create it with 'esi caption' "
                                   "(or pass --captions)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a non-parquet file
        raise DataError(f"cannot read the captions table: {exc}", path=str(path),
                        fix="pass the parquet written by 'esi caption'") from exc
    for col in ("record_id", "caption"):
        if col not in df.columns:
            raise DataError(f"captions table has no '{col}' column (columns: {list(df.columns)})",
                            path=str(path), field=col, fix="pass the parquet written by 'esi caption'")
    df = df[["record_id", "caption"]].copy()
    df["record_id"] = df["record_id"].astype(str)
    empty = df["caption"].isna() | (df["caption"].astype(str).str.strip() == "")
    if empty.any():
        example = df.loc[empty, "record_id"].iat[0]
        raise DataError(f"{int(empty.sum())} captions are empty (e.g. record {example})",
                        path=str(path), field="caption", fix="re-run 'esi caption' for these records")
    df = df.drop_duplicates()
    dup = df["record_id"].duplicated(keep=False)
    if dup.any():
        ids = sorted(df.loc[dup, "record_id"].unique())[:5]
        raise DataError(f"{int(df.loc[dup, 'record_id'].nunique())} record ids have more than one caption "
                        f"(e.g. {ids})", path=str(path), field="record_id",
                        fix="keep one caption per record_id (re-run 'esi caption' into a fresh file)")
    return dict(zip(df["record_id"], df["caption"].astype(str), strict=True))


# --- tokenisation, once, cached -------------------------------------------------------------------
def _tokenize(tokenize: Callable[..., dict[str, torch.Tensor]], texts: list[str], max_length: int,
              chunk: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from tqdm import tqdm

    ids_parts, mask_parts = [], []
    starts = range(0, len(texts), chunk)
    quiet = not progress or len(starts) < 2
    for start in tqdm(starts, desc="tokenise captions", unit="chunk", disable=quiet):
        out = tokenize(texts[start:start + chunk], max_length=max_length)
        ids_parts.append(torch.as_tensor(out["input_ids"])[:, :max_length])
        mask_parts.append(torch.as_tensor(out["attention_mask"])[:, :max_length])
    width = max(p.shape[1] for p in ids_parts)
    pad_id = 0
    for ids, mask in zip(ids_parts, mask_parts, strict=True):
        padded = ids[mask == 0]
        if padded.numel():
            pad_id = int(padded[0])  # the tokenizer's own pad id, read from a padded position
            break
    ids = torch.full((len(texts), width), pad_id, dtype=torch.int32)
    mask = torch.zeros((len(texts), width), dtype=torch.uint8)
    row = 0
    for i_part, m_part in zip(ids_parts, mask_parts, strict=True):
        n, w = i_part.shape
        ids[row:row + n, :w] = i_part.to(torch.int32)
        mask[row:row + n, :w] = m_part.to(torch.uint8)
        row += n
    return ids, mask


def token_cache_key(model: Any, texts: Sequence[str], max_length: int) -> str:
    """Hash of the tokenizer (text config + the ids of a probe sentence), the length and the texts."""
    h = hashlib.sha256()
    h.update(f"v{TOKEN_CACHE_VERSION}|{max_length}|".encode())
    try:
        cfg = model.config_dict()
        cfg = cfg.get("text_cfg", cfg) if isinstance(cfg, dict) else cfg
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    except Exception:  # the probe below still identifies the tokenizer
        pass
    probe = model.tokenize([_PROBE], max_length=max_length)
    h.update(np.asarray(probe["input_ids"]).tobytes())
    for t in texts:
        h.update(t.encode())
        h.update(b"\x00")
    return h.hexdigest()


def tokenize_captions(model: Any, texts: Sequence[str], max_length: int, cache_dir: str | Path | None = None,
                      *, chunk: int = 512, progress: bool = False, build: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Token ids (N, L) int32 and attention mask (N, L) uint8 of ``texts``, cached under ``cache_dir``.

    The cache file is keyed by :func:`token_cache_key`, so a changed caption table or tokenizer gets a new
    file. With ``build=False`` only an existing cache is read (None when there is none): other ranks wait
    for rank 0 to build it.
    """
    texts = list(texts)
    path = None
    if cache_dir is not None:
        key = token_cache_key(model, texts, max_length)
        path = Path(cache_dir) / f"tokens-{key[:20]}.pt"
        if path.exists():
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob["input_ids"].shape[0] == len(texts):
                log.info("caption tokens from cache %s", path)
                return blob["input_ids"], blob["attention_mask"]
    if not build:
        return None
    ids, mask = _tokenize(model.tokenize, texts, max_length, chunk, progress)
    if path is not None:
        atomic_torch_save({"input_ids": ids, "attention_mask": mask}, path)
        log.info("tokenised %d captions (length %d) -> %s", len(texts), ids.shape[1], path)
    return ids, mask


# --- augmentation and misalignment ----------------------------------------------------------------
def augment_signal(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, fs: float = 500.0) -> np.ndarray:
    """Augment a (12, n) mV signal: crop, shift, amplitude and per-lead scaling, then (for a ``cfg.probability``
    share of records) baseline wander, mains interference, muscle-noise bursts and lead dropout, then noise.

    Shape and units are kept (except ``crop``, which shortens to ``cfg.crop`` samples); the draws come only
    from ``rng``, so a generator seeded the same way gives the same output.
    """
    y = np.array(x, dtype=np.float32)
    if cfg.crop is not None and cfg.crop < y.shape[-1]:
        start = int(rng.integers(0, y.shape[-1] - cfg.crop + 1))
        y = y[:, start:start + cfg.crop]
    if cfg.max_shift > 0:
        shift = int(rng.integers(-cfg.max_shift, cfg.max_shift + 1))
        if shift:
            shifted = np.zeros_like(y)
            if shift > 0:
                shifted[:, shift:] = y[:, :-shift]
            else:
                shifted[:, :shift] = y[:, -shift:]
            y = shifted
    if cfg.amplitude_scale > 0:
        y = y * np.float32(rng.uniform(1 - cfg.amplitude_scale, 1 + cfg.amplitude_scale))
    if cfg.lead_scale > 0:
        y = y * rng.uniform(1 - cfg.lead_scale, 1 + cfg.lead_scale, size=(y.shape[0], 1)).astype(np.float32)
    if cfg.probability > 0 and rng.random() < cfg.probability:
        y = _add_artefacts(y, rng, cfg, fs)
    if cfg.noise_std > 0:
        y = y + rng.normal(0.0, cfg.noise_std, size=y.shape).astype(np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


def _add_artefacts(y: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, fs: float) -> np.ndarray:
    """Baseline wander, mains, EMG bursts and lead dropout (each off when its setting is 0)."""
    leads, n = y.shape
    t = np.arange(n, dtype=np.float64) / fs
    extra = np.zeros((leads, n), np.float64)
    if cfg.baseline_wander > 0:  # respiration: 0.05-0.5 Hz, lead-dependent amplitude and phase
        f = rng.uniform(0.05, 0.5)
        amp = rng.uniform(0, cfg.baseline_wander) * rng.uniform(0.3, 1.0, size=(leads, 1))
        extra += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, size=(leads, 1)))
    if cfg.powerline > 0:
        f = 50.0 if rng.random() < 0.5 else 60.0
        amp = rng.uniform(0, cfg.powerline) * rng.uniform(0.3, 1.0, size=(leads, 1))
        extra += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, size=(leads, 1)))
    if cfg.emg > 0:  # band-limited (20-150 Hz) noise under a smooth burst envelope of 1-5 s
        spec = np.fft.rfft(rng.normal(size=(leads, n)), axis=1)
        freqs = np.fft.rfftfreq(n, 1.0 / fs)
        spec[:, (freqs < 20) | (freqs > 150)] = 0
        noise = np.fft.irfft(spec, n=n, axis=1)
        noise /= noise.std(axis=1, keepdims=True) + 1e-12
        width = int(min(n, rng.uniform(1.0, 5.0) * fs))
        start = int(rng.integers(0, n - width + 1))
        envelope = np.zeros(n)
        envelope[start:start + width] = np.hanning(width)
        extra += rng.uniform(0, cfg.emg) * noise * envelope
    y = (y + extra).astype(np.float32)
    if cfg.lead_dropout > 0:
        off = rng.random(leads) < cfg.lead_dropout
        if off.all():
            off[int(rng.integers(leads))] = False
        y[off] = 0.0
    return y


def misalignment(n: int, fraction: float, seed: int) -> np.ndarray:
    """Caption index per position: identity, except round(fraction * n) positions that get another's caption.

    The chosen positions are permuted cyclically among themselves, so each of them surely gets a caption of
    another record (a cycle has no fixed point). Deterministic in ``seed``. With one chosen position there is
    no partner: two are used.
    """
    index = np.arange(n)
    k = int(round(fraction * n))
    if k == 1 and n >= 2:
        k = 2
    if k < 2:
        return index
    rng = np.random.default_rng([seed, 0x5EED])
    chosen = rng.choice(n, size=k, replace=False)
    index[chosen] = np.roll(chosen, 1)
    return index


# --- dataset --------------------------------------------------------------------------------------
class PretrainDataset(Dataset):
    """(ECG, caption tokens) pairs over store rows that have a caption and are not quarantined.

    Args:
        store: store folder or EcgStore.
        captions: record_id -> caption.
        augment: augmentation settings (None: no augmentation).
        seed: seeds augmentation draws and the shuffled pairs.
        shuffle_pairs: fraction of misaligned pairs.
        folds: only these store folds.
        limit: only the first N usable records (of the main store).
        missing_captions: "error" or "skip" for records without a caption.
        mix: more (store, captions) pairs appended after the main store's records (all their folds). In every
            store, records that the real benchmark's split puts in its evaluation part are left out.
    """

    def __init__(self, store: Any, captions: dict[str, str], *, augment: AugmentConfig | None = None,
                 seed: int = 0, shuffle_pairs: float = 0.0, folds: Sequence[int] | None = None,
                 limit: int | None = None, missing_captions: str = "error",
                 captions_path: str | None = None, mix: Sequence[tuple[Any, dict[str, str]]] = ()) -> None:
        from esi.data.dataset import EcgStoreDataset

        self.n_quarantined = self.n_missing_captions = self.n_eval_excluded = 0
        rows, store = self._usable(store, captions, folds, missing_captions, captions_path)
        if len(rows) == 0:
            raise DataError("no usable records: all are quarantined, outside the folds, or uncaptioned",
                            path=str(store.path), fix="check 'esi data info STORE' and the captions table")
        if limit is not None:
            rows = rows[:limit]
        self.parts = [EcgStoreDataset(store, indices=rows, exclude_quarantined=True)]
        for mix_store, mix_captions in mix:
            mrows, mstore = self._usable(mix_store, mix_captions, None, "skip", None)
            self.parts.append(EcgStoreDataset(mstore, indices=mrows, exclude_quarantined=True))
        self.base = self.parts[0]
        shapes = {(float(p.store.fs), int(p.store.n_samples)) for p in self.parts}
        if len(shapes) > 1:
            raise DataError(f"mixed stores differ in (sampling rate Hz, samples per record): {sorted(shapes)}",
                            fix="prepare every mixed store with the main store's --fs and --duration")
        self.fs = float(self.parts[0].store.fs)
        self.part_of = np.concatenate([np.full(len(p.indices), i, np.int64) for i, p in enumerate(self.parts)])
        self.rows = np.concatenate([np.asarray(p.indices, np.int64) for p in self.parts])
        self.record_ids: list[str] = []
        texts: list[str] = []
        for part, (_, table) in zip(self.parts, [(store, captions), *mix], strict=True):
            ids = part.store.manifest["record_id"].astype(str).to_numpy()[part.indices]
            self.record_ids += [str(r) for r in ids]
            texts += [table[str(r)] for r in ids]
        self.n_mixed = len(self.rows) - len(self.parts[0].indices)
        # Distinct captions are tokenised once; position -> row of the distinct table.
        self.texts, self.caption_row = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        self.texts = [str(t) for t in self.texts]
        self.text_index = misalignment(len(self.rows), shuffle_pairs, seed)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.input_ids: torch.Tensor | None = None
        self.attention_mask: torch.Tensor | None = None
        log.info("pretraining records: %d (mixed in from other stores: %d; quarantined excluded: %d, without "
                 "caption: %d, real-benchmark evaluation records excluded: %d, misaligned: %d)", len(self.rows),
                 self.n_mixed, self.n_quarantined, self.n_missing_captions, self.n_eval_excluded, self.n_misaligned)

    def _usable(self, store: Any, captions: dict[str, str], folds: Sequence[int] | None, missing_captions: str,
                captions_path: str | None) -> tuple[np.ndarray, Any]:
        """Rows of one store that are not quarantined, not in the real benchmark's evaluation part and captioned."""
        from esi.data.real_split import part_mask
        from esi.data.store import EcgStore

        store = store if isinstance(store, EcgStore) else EcgStore(store)
        rows = store.indices(exclude_quarantined=True, folds=folds)
        n_all = len(store.indices(exclude_quarantined=False, folds=folds))
        self.n_quarantined += n_all - len(rows)
        ids = store.manifest["record_id"].astype(str).to_numpy()
        held_out = part_mask(ids[rows], "eval")
        self.n_eval_excluded += int(held_out.sum())
        rows = rows[~held_out]
        has = np.array([ids[r] in captions for r in rows], dtype=bool)
        missing = int((~has).sum())
        self.n_missing_captions += missing
        if missing:
            example = ids[rows[~has][0]]
            if missing_captions == "error":
                raise DataError(
                    f"{missing} of {len(rows)} usable records have no caption (e.g. {example})",
                    path=captions_path, field="record_id",
                    fix="caption the same store again ('esi caption STORE --out CAPTIONS'), or pass "
                        "--skip-missing-captions (missing_captions='skip') to train without them")
            log.warning("%d of %d records of %s have no caption and are skipped (e.g. %s)", missing, len(rows),
                        store.path, example)
        return rows[has], store

    @property
    def n_misaligned(self) -> int:
        return int((self.text_index != np.arange(len(self.text_index))).sum())

    def set_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Attach the tokenised distinct captions (rows aligned with ``self.texts``)."""
        if input_ids.shape[0] != len(self.texts):
            raise ValueError(f"expected {len(self.texts)} token rows, got {input_ids.shape[0]}")
        self.input_ids, self.attention_mask = input_ids, attention_mask

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on the epoch (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def caption_lengths(self) -> np.ndarray:
        """Caption tokens of each position (after any misalignment), for length-grouped batches."""
        if self.attention_mask is None:
            raise RuntimeError("tokens not attached: call set_tokens first")
        per_text = self.attention_mask.sum(dim=1).numpy()
        return per_text[self.caption_row[self.text_index]]

    def caption_of(self, position: int) -> str:
        """The caption paired with ``position`` (after any deliberate misalignment)."""
        return self.texts[int(self.caption_row[self.text_index[position]])]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> dict[str, Any]:
        if self.input_ids is None or self.attention_mask is None:
            raise RuntimeError("tokens not attached: call set_tokens first")
        signal = self.parts[int(self.part_of[position])].store.signal(int(self.rows[position]))
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(position)])
            signal = augment_signal(signal, rng, self.augment, self.fs)
        trow = int(self.caption_row[self.text_index[position]])
        return {"signal": torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)),
                "input_ids": self.input_ids[trow], "attention_mask": self.attention_mask[trow],
                "position": position}


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a batch and trim token columns that are padding in every row (shorter text passes)."""
    mask = torch.stack([b["attention_mask"] for b in batch])
    width = max(2, int(mask.sum(dim=1).max()))
    return {
        "signal": torch.stack([b["signal"] for b in batch]),
        "input_ids": torch.stack([b["input_ids"] for b in batch])[:, :width].long(),
        "attention_mask": mask[:, :width].long(),
        "position": torch.as_tensor([b["position"] for b in batch]),
    }


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (same per-epoch permutation on every rank, seeded by seed + epoch) that can start
    part-way into an epoch, to resume without replaying or skipping batches, and can group batches by length.

    Rank r takes positions r, r + W, r + 2W, ... of the epoch's order, so after k batches of B on each of W
    ranks exactly the first k * B * W entries have been consumed, whatever W was.

    With ``lengths`` (caption tokens per record) and ``bucket_batches`` = n > 0, the permutation is cut into
    windows of n global batches (``batch_size`` x ranks records); each window is sorted by length and cut into
    global batches, and the order of all global batches is shuffled (same seed). Batches then hold captions of
    similar length, so little of each padded batch is padding; every rank's batch j is a slice of global
    batch j, and resuming still skips a prefix of the order.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, *, lengths: Sequence[int] | np.ndarray | None = None, batch_size: int = 1,
                 bucket_batches: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=True)
        self.start = 0
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.batch_size, self.bucket_batches = int(batch_size), int(bucket_batches)
        if self.lengths is not None and len(self.lengths) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"{len(self.lengths)} lengths for {len(dataset)} records")  # type: ignore[arg-type]

    def set_start(self, samples_per_rank: int) -> None:
        """Skip this many of this rank's samples in the current epoch (0 for a fresh epoch)."""
        self.start = max(0, min(int(samples_per_rank), self.num_samples))

    def _bucketed(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()[: self.total_size]  # type: ignore[arg-type]
        width = self.batch_size * self.num_replicas
        window = width * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, len(order) - width + 1, window):
            chunk = order[start:start + window]
            chunk.sort(key=lambda i: -int(self.lengths[i]))  # type: ignore[index]
            batches += [chunk[j:j + width] for j in range(0, len(chunk) - width + 1, width)]
        used = {i for b in batches for i in b}
        tail = [i for i in order if i not in used]  # fewer than one global batch: the loader drops them
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return [i for b in shuffled for i in b] + tail

    def __iter__(self) -> Iterator[int]:
        if self.lengths is None or self.bucket_batches < 1:
            return iter(list(super().__iter__())[self.start:])
        order = self._bucketed()
        return iter(order[self.rank:self.total_size:self.num_replicas][self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
