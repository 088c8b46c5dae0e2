"""Which records a model was pretrained on, and the refusal to evaluate on a test split that overlaps them.

Sources, first match wins (``checkpoint_extra`` is the checkpoint's ``extra`` dict):

1. ``extra["provenance"]`` (or ``extra["pretrain"]["provenance"]``): ``{"record_ids": [...]}`` (exact), or
   ``{"store_digest": ..., "folds": [...], "store": path}``: the records of those folds of the store whose
   :func:`store_digest` matches (the evaluation store, or the recorded path).
2. ``extra["pretrain"]["config"]`` (what ``esi pretrain`` writes today): the records of ``folds`` (all records
   when ``folds`` is null) of the ``store`` folder, read now. ``limit`` and uncaptioned records are ignored,
   so this is a superset of what was trained on: a check on it can only refuse more, never less.
3. Nothing recorded (a config name, an in-memory model, a foreign checkpoint): status ``unknown``; the
   evaluation runs and the report says that contamination was not checked.

The check compares record ids (source-prefixed, e.g. ``ptbxl/123``), so the same recordings prepared into
two stores are still caught.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esi.errors import EvaluationError

log = logging.getLogger(__name__)


class ContaminationError(EvaluationError):
    """The test split overlaps the model's pretraining records (exit 2 on the command line)."""


def store_digest(store: Any) -> str:
    """sha256 (16 hex) of a store's record ids (sorted) and signal format: which recordings it holds."""
    h = hashlib.sha256()
    ids = sorted(store.manifest["record_id"].astype(str))
    h.update(f"{store.fs}:{store.n_samples}:{len(ids)}\n".encode())
    h.update("\n".join(ids).encode())
    return h.hexdigest()[:16]


@dataclass
class Provenance:
    """The pretraining records of a model, as far as its checkpoint tells."""

    status: str  # known | unknown | unverifiable
    source: str = ""
    store: str | None = None
    folds: list[int] | None = None
    record_ids: set[str] = field(default_factory=set)
    store_indices: np.ndarray | None = None  # rows of ``store`` (for the MMD reference)
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "source": self.source,
            "store": self.store,
            "folds": self.folds,
            "n_records": len(self.record_ids) if self.status == "known" else None,
            "note": self.note,
        }


def _records_of(store: Any, folds: Iterable[int] | None) -> tuple[set[str], np.ndarray]:
    idx = store.indices(exclude_quarantined=False, folds=list(folds) if folds is not None else None)
    return set(store.manifest["record_id"].astype(str).to_numpy()[idx]), idx


def _open(path: str | None) -> Any | None:
    from esi.data.store import EcgStore
    from esi.errors import EsiError

    if not path or not (Path(path) / "header.json").exists():
        return None
    try:
        return EcgStore(path)
    except EsiError as exc:
        log.warning("pretraining store %s cannot be opened (%s)", path, exc)
        return None


def pretraining_provenance(checkpoint_extra: dict | None, eval_store: Any | None = None) -> Provenance:
    """The pretraining records of a model from its checkpoint metadata (see the module docstring)."""
    extra = checkpoint_extra or {}
    pre = extra.get("pretrain") if isinstance(extra.get("pretrain"), dict) else {}
    explicit = extra.get("provenance") or pre.get("provenance")
    if isinstance(explicit, dict):
        if explicit.get("record_ids") is not None:
            ids = {str(r) for r in explicit["record_ids"]}
            store = _open(explicit.get("store"))
            idx = None
            if store is not None:
                idx = np.flatnonzero(store.manifest["record_id"].astype(str).isin(ids).to_numpy())
            return Provenance("known", "checkpoint provenance (record ids)", explicit.get("store"),
                              explicit.get("folds"), ids, idx)
        digest, folds = explicit.get("store_digest"), explicit.get("folds")
        for store in (eval_store, _open(explicit.get("store"))):
            if store is not None and digest and store_digest(store) == digest:
                ids, idx = _records_of(store, folds)
                return Provenance("known", "checkpoint provenance (store digest + folds)", str(store.path),
                                  folds, ids, idx)
        return Provenance("unverifiable", "checkpoint provenance", explicit.get("store"), folds,
                          note=f"no store with digest {digest} is at hand; pass the pretraining store")
    config = pre.get("config") if isinstance(pre.get("config"), dict) else None
    if config and config.get("store"):
        folds = config.get("folds")
        store = _open(config["store"])
        if store is None:
            return Provenance("unverifiable", "pretrain config", config["store"], folds,
                              note=f"the pretraining store {config['store']} is not readable here")
        ids, idx = _records_of(store, folds)
        note = "limit/uncaptioned records ignored: a superset" if config.get("limit") else ""
        return Provenance("known", "pretrain config (store + folds)", str(store.path), folds, ids, idx, note)
    return Provenance("unknown", note="the model carries no pretraining record (config name, in-memory model or "
                      "a checkpoint without extra['pretrain'])")


def check_contamination(prov: Provenance, test_record_ids: Iterable[str], *, allow: bool = False) -> dict:
    """Compare the test split with the pretraining records; raise ContaminationError on overlap unless ``allow``.

    Returns the summary the report prints: status, overlap count, examples, override flag.
    """
    test = {str(r) for r in test_record_ids}
    out = {**prov.to_dict(), "n_test": len(test), "overlap": None, "allowed_overlap": False}
    if prov.status != "known":
        log.warning("test-fold contamination not checked: %s", prov.note or prov.status)
        return out
    overlap = sorted(test & prov.record_ids)
    out["overlap"] = len(overlap)
    out["overlap_examples"] = overlap[:5]
    if overlap:
        msg = (f"{len(overlap)} of {len(test)} test records were in the model's pretraining set "
               f"({prov.source}: store {prov.store}, folds {prov.folds or 'all'}; e.g. {', '.join(overlap[:3])}). "
               "A score on them measures memorisation; fix: pretrain with --folds 1-8 (test fold 10 held out) "
               "or evaluate on another store; --allow-contaminated runs anyway and marks the report")
        if not allow:
            raise ContaminationError(msg)
        log.warning("CONTAMINATED EVALUATION (--allow-contaminated): %s", msg)
        out["allowed_overlap"] = True
    return out
