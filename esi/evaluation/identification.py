"""1-shot subject identification: one segment per subject enrols (gallery), another is the probe.

Pairing:
- ``records`` (PTB-XL): subjects with at least two records in the test split; the first segment of their first
  record enrols and the first segment of their second record is the probe (different recordings).
- ``segments`` (ICBEB, where each record is its own class): two non-overlapping segments of the same record
  (0-L s enrols, L-2L s probes); records too short for two real (unpadded) segments are left out.
- ``auto``: ``records`` when at least ``min_subjects`` subjects have two records, else ``segments``.
Metrics: top-1 accuracy over all enrolled subjects (cosine similarity) and macro AUC, one-vs-rest over
the enrolled subjects with the similarity to each gallery entry as the score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from esi.errors import EvaluationError

log = logging.getLogger(__name__)

SEGMENT_SECONDS = {"ptbxl": 5.0, "synthetic": 5.0, "icbeb": 4.0, "custom": 5.0}


@dataclass
class Pairs:
    """Store indices and segment offsets (s) of the gallery and probe entries, aligned by subject."""

    subjects: np.ndarray
    gallery_idx: np.ndarray
    gallery_start: np.ndarray
    probe_idx: np.ndarray
    probe_start: np.ndarray
    mode: str
    skipped: int = 0


def make_pairs(
    indices: np.ndarray,
    subjects: np.ndarray,
    record_ids: np.ndarray,
    real_seconds: np.ndarray,
    segment_s: float,
    *,
    mode: str = "auto",
    min_subjects: int = 10,
) -> Pairs:
    """Choose gallery/probe pairs from the test records (store ``indices`` with their subject ids)."""
    indices = np.asarray(indices)
    subjects = np.asarray(subjects).astype(str)
    order = np.lexsort((np.asarray(record_ids).astype(str), subjects))
    by_subject: dict[str, list[int]] = {}
    for pos in order:
        by_subject.setdefault(subjects[pos], []).append(int(pos))
    multi = {s: p for s, p in by_subject.items() if len(p) >= 2}
    if mode == "auto":
        mode = "records" if len(multi) >= min_subjects else "segments"
    if mode == "records":
        subj = sorted(multi)
        g = np.array([multi[s][0] for s in subj], dtype=np.int64)
        p = np.array([multi[s][1] for s in subj], dtype=np.int64)
        ok = (real_seconds[g] >= segment_s - 1e-6) & (real_seconds[p] >= segment_s - 1e-6)
        g, p = g[ok], p[ok]
        return Pairs(
            subjects=np.array(subj, dtype=object)[ok],
            gallery_idx=indices[g],
            gallery_start=np.zeros(len(g)),
            probe_idx=indices[p],
            probe_start=np.zeros(len(p)),
            mode="records",
            skipped=int((~ok).sum()),
        )
    if mode != "segments":
        raise EvaluationError(f"unknown identification pairing {mode!r}; use auto, records or segments")
    ok = real_seconds >= 2 * segment_s - 1e-6
    pos = np.flatnonzero(ok)
    # Each record is its own identity here: label it by record id, so two records of a subject stay apart.
    ids = np.asarray(record_ids).astype(str)[pos]
    return Pairs(
        subjects=ids.astype(object),
        gallery_idx=indices[pos],
        gallery_start=np.zeros(len(pos)),
        probe_idx=indices[pos],
        probe_start=np.full(len(pos), segment_s),
        mode="segments",
        skipped=int((~ok).sum()),
    )


def identification_metrics(gallery: np.ndarray, probes: np.ndarray) -> dict:
    """Top-1 accuracy and macro one-vs-rest AUC; row i of ``probes`` belongs to gallery entry i."""
    n = len(gallery)
    if n < 2 or len(probes) != n:
        raise EvaluationError(
            f"identification needs at least 2 enrolled subjects and one probe each; got {n} "
            f"gallery and {len(probes)} probe entries (use a larger test split)"
        )
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    p = probes / np.maximum(np.linalg.norm(probes, axis=1, keepdims=True), 1e-12)
    sim = p @ g.T  # (probe, gallery)
    true = np.diag(sim)
    # Ties with the true entry count as errors: a constant embedding must not score 100%.
    correct = (sim.max(1) <= true) & ((sim >= true[:, None]).sum(1) == 1)
    # AUC for gallery subject j: its own probe (one positive) against the other n-1 probes (negatives).
    col_true = true[None, :]
    below = (sim < col_true).sum(0)
    ties = (sim == col_true).sum(0) - 1
    auc = (below + 0.5 * ties) / (n - 1)
    rank = (sim > true[:, None]).sum(1) + 1
    return {
        "top1_accuracy": float(correct.mean()),
        "macro_auc": float(auc.mean()),
        "mean_rank": float(rank.mean()),
        "n_subjects": int(n),
        "chance_accuracy": 1.0 / n,
    }


def identification(
    cache,
    model,
    store,
    indices: np.ndarray,
    subjects: np.ndarray,
    *,
    benchmark: str = "ptbxl",
    segment_s: float | None = None,
    mode: str = "auto",
    fit: str = "crop",
    batch_size: int = 64,
    progress: bool = True,
    kind: str = "embedding",
) -> dict:
    """Run 1-shot identification on the test records of a benchmark (``kind`` vectors through ``cache``:
    the contrastive ``embedding``, or the encoder's pooled ``features``)."""
    from esi.evaluation.embed import Segment

    seg = segment_s or SEGMENT_SECONDS.get(benchmark, 5.0)
    m = store.manifest
    rec_ids = m["record_id"].to_numpy()[indices]
    n_samples = store.n_samples
    padded = (
        m["padded_samples"].to_numpy()[indices] if "padded_samples" in m.columns else np.zeros(len(indices))
    )
    real_s = (n_samples - np.asarray(padded, float)) / store.fs
    pairs = make_pairs(indices, subjects, rec_ids, real_s, seg, mode=mode)
    if len(pairs.gallery_idx) < 2:
        raise EvaluationError(
            f"identification: only {len(pairs.gallery_idx)} subject(s) can be enrolled in the "
            f"test split ({pairs.mode} pairing, {seg:g} s segments); it needs at least 2"
        )
    embs = {}
    for name, idx, start in (
        ("gallery", pairs.gallery_idx, pairs.gallery_start),
        ("probe", pairs.probe_idx, pairs.probe_start),
    ):
        segment = Segment(start_s=float(start[0]), length_s=seg, fit=fit)
        embs[name] = cache.get(
            model,
            store,
            idx,
            kind=kind,
            segment=segment,
            batch_size=batch_size,
            progress=progress,
            desc=f"identification {name}",
        )
    result = identification_metrics(embs["gallery"], embs["probe"])
    result.update(
        {
            "pairing": pairs.mode,
            "vectors": kind,
            "segment_s": seg,
            "segment_fit": fit,
            "skipped_records": pairs.skipped,
            "pool_records": int(len(indices)),
            "pool_subjects": int(len(set(np.asarray(subjects).astype(str)))),
        }
    )
    log.info(
        "identification (%s, %d subjects enrolled of %d in the test pool, %g s): top-1 %.3f (chance %.4f), AUC %.3f",
        pairs.mode,
        result["n_subjects"],
        result["pool_subjects"],
        seg,
        result["top1_accuracy"],
        result["chance_accuracy"],
        result["macro_auc"],
    )
    return result
