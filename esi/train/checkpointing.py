"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A training checkpoint (``RUN_DIR/checkpoints/step-000000123.pt``) is a model checkpoint of
:mod:`esi.models.checkpoint` (same format marker, config, state dict, text assets, ``extra``; ``load_model``
reads it) with a ``training`` section added: the optimizer and scheduler, the :class:`~esi.train.state.TrainState`
(position in the data, history, non-finite counters, MLflow run id), every rank's RNG states, the pretrain
config and the world size. Everything in it is tensors and plain containers, so it loads with
``weights_only=True``. It is written by the one atomic writer (temp file, fsync, rename); the last ``keep``
are kept.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from esi.errors import CheckpointError
from esi.models.checkpoint import atomic_save, checkpoint_payload, read_checkpoint

log = logging.getLogger(__name__)

TRAINING_VERSION = 2  # of the "training" section; version 1 was the separate "esi-train-checkpoint" file
LEGACY_FORMAT = "esi-train-checkpoint"
_NAME = re.compile(r"^step-(\d{9})\.pt$")

# Kept for callers of the old name: the token cache and anything else written with torch.save.
atomic_torch_save = atomic_save


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states of this process, as plain containers and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(),
                             "numpy": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def save_training_checkpoint(run_dir: str | Path, model: nn.Module, training: dict[str, Any],
                             extra: dict[str, Any] | None = None, keep: int = 3) -> Path:
    """Write the model checkpoint of ``model`` plus ``training`` as step-<step>.pt; keep the newest ``keep``.

    ``training`` must hold ``state`` (TrainState.to_dict()); ``extra`` is the model checkpoint's metadata.
    """
    step = int(training["state"]["step"])
    payload = checkpoint_payload(model, **(extra or {}))
    payload["training"] = {"version": TRAINING_VERSION, **training}
    path = atomic_save(payload, checkpoint_dir(run_dir) / f"step-{step:09d}.pt")
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint as a model checkpoint dict with its ``training`` section (checked)."""
    path = Path(path)
    try:
        payload = read_checkpoint(path)
    except CheckpointError:
        payload = _read_legacy(path)
    training = payload.get("training")
    if not isinstance(training, dict) or "state" not in training:
        raise CheckpointError(f"{path} is a model checkpoint without training state; resume needs a file of "
                              "RUN_DIR/checkpoints (step-*.pt)")
    if training.get("version") != TRAINING_VERSION:
        raise CheckpointError(f"{path} has training-state version {training.get('version')}, this ESI reads "
                              f"{TRAINING_VERSION}; start a new run (another --out)")
    return payload


def _read_legacy(path: Path) -> dict[str, Any]:
    """Version-1 training checkpoints (their own format, numpy RNG states): our own files, full unpickling."""
    try:
        old = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read training checkpoint {path}: {exc}; delete it to resume from the "
                              "previous one") from exc
    if not isinstance(old, dict) or old.get("format") != LEGACY_FORMAT:
        raise CheckpointError(f"{path} is not an ESI training checkpoint")
    rngs = []
    for r in old["rng"]:
        kind, keys, pos, has_gauss, cached = r["numpy"]
        rngs.append({**r, "numpy": [kind, [int(k) for k in keys], pos, has_gauss, cached]})
    state = {"step": old["step"], "epoch": old["epoch"], "samples_in_epoch": old["samples_in_epoch"],
             "history": old["history"], "epochs": old["epochs"],
             "consecutive_bad": old["nonfinite"]["consecutive"], "total_bad": old["nonfinite"]["total"],
             "mlflow_run_id": old.get("mlflow_run_id")}
    from esi.models.checkpoint import FORMAT, VERSION

    return {"format": FORMAT, "version": VERSION, "config": old["model_config"], "state_dict": old["model_state"],
            "extra": {}, "text_assets": None,
            "training": {"version": TRAINING_VERSION, "state": state, "train_config": old["train_config"],
                         "optimizer": old["optimizer"], "scheduler": old["scheduler"], "rng": rngs,
                         "world_size": old["world_size"], "saved": old.get("saved")}}


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run (older ones are tried if the newest cannot be read)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_training_checkpoint(path)
        except CheckpointError as exc:
            log.warning("skipping unreadable checkpoint: %s", exc)
    return None
