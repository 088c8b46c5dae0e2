"""Per-record signal statistics, computed streaming over a store (one batch in memory at a time).

Every statistic is vectorised over a batch of shape (B, leads, samples). The table has one row per store
record; the signal suite (esi.validation.suites) puts expectations on its columns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from esi.data.store import EcgStore

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Parameters of the statistics themselves (thresholds on them live in the signal suite).
DEFAULT_PARAMS: dict[str, float] = {
    "flat_std_mv": 0.005,  # a lead whose standard deviation is below this is flat (dead electrode, all-NaN)
    "hf_cutoff_hz": 40.0,  # energy above this counts as high-frequency noise (ECG energy is mostly below)
    "hf_floor_hz": 0.5,  # energy below this (baseline) is left out of the denominator
    "polarity_threshold": 0.3,  # |polarity| above this is a clearly positive/negative lead
    "clip_lead_fraction": 0.005,  # leads with a clipped share above this are listed by name
}
_EPS = 1e-6


def _lead_index(leads: list[str], n_leads: int) -> dict[str, int]:
    """Lead name -> row; empty when the header names do not match the array (names would be unreliable)."""
    return {name: i for i, name in enumerate(leads)} if len(leads) == n_leads else {}


def _names(mask: np.ndarray, leads: list[str]) -> list[str]:
    """Comma-joined lead names where ``mask`` (B, L) is true (lead numbers when names are unknown)."""
    labels = leads if len(leads) == mask.shape[1] else [str(i) for i in range(mask.shape[1])]
    return [",".join(labels[j] for j in np.flatnonzero(row)) for row in mask]


def batch_statistics(x: np.ndarray, fs: float, leads: list[str],
                     params: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Statistics of a batch ``x`` (B, L, N) in mV. Returns a dict of arrays/lists of length B."""
    import scipy.fft

    p = {**DEFAULT_PARAMS, **(params or {})}
    x = np.asarray(x, dtype=np.float32)
    b, n_leads, n = x.shape
    finite = np.isfinite(x)
    stored_nan = 1.0 - finite.mean(axis=(1, 2)) if x.size else np.zeros(b)
    if not finite.all():
        x = np.where(finite, x, np.float32(0.0))  # other statistics see missing samples as 0
    del finite

    std = x.std(axis=2)
    flat = std < p["flat_std_mv"]
    hi, lo = x.max(axis=2), x.min(axis=2)
    ptp = hi - lo
    # The median of every 4th sample is a baseline estimate as good as the full one, at a quarter of the sort.
    med = np.median(x[:, :, ::4], axis=2)

    # Clipping: samples that sit at the lead's extreme value inside a run of identical values.
    same_next = x[:, :, 1:] == x[:, :, :-1]
    in_run = np.zeros(x.shape, dtype=bool)
    in_run[:, :, 1:] |= same_next
    in_run[:, :, :-1] |= same_next
    del same_next
    at_extreme = (x == hi[:, :, None]) | (x == lo[:, :, None])
    clip = (at_extreme & in_run).mean(axis=2)
    del at_extreme, in_run
    clip[flat] = 0.0  # a flat lead is reported as flat, not as clipped

    # High-frequency noise: share of spectral energy above the cutoff (baseline band excluded).
    spec = scipy.fft.rfft(x - x.mean(axis=2, keepdims=True), axis=2, workers=1)
    power = spec.real ** 2 + spec.imag ** 2
    del spec
    freqs = np.fft.rfftfreq(n, d=1.0 / fs)  # ascending: each band is a slice (a view, not a copy)
    k_floor, k_cut = np.searchsorted(freqs, [p["hf_floor_hz"], p["hf_cutoff_hz"]], side="right")
    total = power[:, :, k_floor:].sum(axis=2)
    high = power[:, :, k_cut:].sum(axis=2)
    del power
    hf = np.where(flat | (total <= 0), np.nan, high / np.maximum(total, _EPS))
    with np.errstate(all="ignore"):
        all_flat = np.isnan(hf).all(axis=1)
        hf_rec = np.where(all_flat, 0.0, np.nanmedian(np.where(all_flat[:, None], 0.0, hf), axis=1))

    # Lead-swap hints from the limb leads (NaN when the store lacks them).
    idx = _lead_index(leads, n_leads)
    nan = np.full(b, np.nan)
    limb_residual, arm_hint, pol_i, pol_avr = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    if all(k in idx for k in ("I", "II", "III")):
        # Lead offsets are not swaps: compare the leads around their medians.
        centred = {k: x[:, idx[k]] - med[:, idx[k], None] for k in ("I", "II", "III", "aVR", "aVL", "aVF")
                   if k in idx}
        li, lii, liii = centred["I"], centred["II"], centred["III"]
        scale = (np.sqrt((li ** 2).mean(1)) + np.sqrt((lii ** 2).mean(1)) + np.sqrt((liii ** 2).mean(1))) / 3
        scale = np.maximum(scale, 1e-3)
        residual = np.sqrt(((li + liii - lii) ** 2).mean(1)) / scale
        if all(k in idx for k in ("aVR", "aVL", "aVF")):
            aug = centred["aVR"] + centred["aVL"] + centred["aVF"]
            residual = np.maximum(residual, np.sqrt((aug ** 2).mean(1)) / scale)
        limb_residual = residual
    if "I" in idx and "aVR" in idx:
        # Polarity in [-1, 1]: the energy of upward minus downward deflections around the median, over
        # the total (energy rather than extremes, so one ectopic beat or spike does not decide it).
        def polarity(lead: int) -> np.ndarray:
            d = x[:, lead] - med[:, lead, None]
            up, down = (np.maximum(d, 0) ** 2).sum(1), (np.minimum(d, 0) ** 2).sum(1)
            return (up - down) / np.maximum(up + down, _EPS)

        pol_i, pol_avr = polarity(idx["I"]), polarity(idx["aVR"])
        thr = p["polarity_threshold"]
        usable = ~flat[:, idx["I"]] & ~flat[:, idx["aVR"]]
        arm_hint = ((pol_i < -thr) & (pol_avr > thr) & usable).astype(float)

    return {
        "n_leads": np.full(b, n_leads), "n_samples": np.full(b, n),
        "stored_nan_fraction": stored_nan, "flat_leads": flat.sum(axis=1),
        "flat_lead_names": _names(flat, leads),
        "clipping_fraction": clip.max(axis=1) if n_leads else np.zeros(b),
        "clipped_leads": _names(clip > p["clip_lead_fraction"], leads),
        "amplitude_mv": ptp.max(axis=1) if n_leads else np.zeros(b),
        "baseline_offset_mv": np.abs(med).max(axis=1) if n_leads else np.zeros(b),
        "hf_noise_ratio": hf_rec, "limb_residual": limb_residual, "arm_reversal_hint": arm_hint,
        "lead_I_polarity": pol_i, "lead_aVR_polarity": pol_avr,
    }


def signal_statistics(store: EcgStore | str, batch_size: int = 256, progress: bool = True,
                      params: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row of signal statistics per store record, computed batch by batch over ``store.iter_batches``.

    Columns: record_id, index, n_leads, n_samples, nan_fraction (max of the manifest's source NaN share and
    the NaN share in the store), stored_nan_fraction, source_nan_fraction, flat_leads, flat_lead_names,
    clipping_fraction, clipped_leads, amplitude_mv, baseline_offset_mv, hf_noise_ratio, limb_residual,
    arm_reversal_hint, lead_I_polarity, lead_aVR_polarity.
    """
    import pandas as pd
    from tqdm import tqdm

    store = store if isinstance(store, EcgStore) else EcgStore(store)
    manifest = store.manifest
    # A manifest shorter than the header says is a dataset-level failure; read only rows both describe.
    n = min(len(store), len(manifest))
    leads, fs = store.leads, float(store.fs)
    columns: dict[str, list] = {}
    t0 = time.perf_counter()
    # iter_batches releases each shard's memory map once it has moved past it: memory stays flat.
    with tqdm(total=n, desc="signal statistics", unit="rec", disable=not progress) as bar:
        for idx, batch in store.iter_batches(batch_size, indices=np.arange(n)):
            stats = batch_statistics(batch, fs, leads, params)
            for key, value in stats.items():
                columns.setdefault(key, []).extend(np.asarray(value).tolist())
            bar.update(len(idx))
    seconds = time.perf_counter() - t0
    log.info("signal statistics of %d records in %.1f s (%.0f records/s)", n, seconds,
             n / seconds if seconds > 0 else float("inf"))
    if not columns:
        empty = batch_statistics(np.zeros((0, len(leads), store.n_samples), np.float32), fs, leads, params)
        columns = {k: [] for k in empty}
    df = pd.DataFrame(columns)
    df.insert(0, "index", np.arange(n))
    df.insert(0, "record_id", manifest["record_id"].astype(str).to_numpy()[:n])
    source_nan = (pd.to_numeric(manifest["nan_fraction"], errors="coerce").fillna(0.0).to_numpy()[:n]
                  if "nan_fraction" in manifest else np.zeros(n))
    df["source_nan_fraction"] = source_nan
    df["nan_fraction"] = np.maximum(df["stored_nan_fraction"].to_numpy(float), source_nan)
    return df
