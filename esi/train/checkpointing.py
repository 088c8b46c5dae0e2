"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint (``RUN_DIR/checkpoints/step-000000123.pt``) holds the model state and config, the optimizer and
scheduler, the position in the data (epoch and samples consumed in it), every rank's RNG states, the history
so far, the non-finite counters and the MLflow run id. Files are written to a temporary name and renamed, so
the newest file is always complete; the last ``keep`` are kept.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esi.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = "esi-train-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d{9})\.pt$")


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states of this process."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def save_training_checkpoint(run_dir: str | Path, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as step-<step>.pt and prune all but the newest ``keep``."""
    path = checkpoint_dir(run_dir) / f"step-{int(state['step']):09d}.pt"
    atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_checkpoint` (our own file: full unpickling)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"cannot read training checkpoint {path}: {exc}; delete it to resume from the "
                              "previous one") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ESI training checkpoint (format {FORMAT!r} expected)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has training-checkpoint version {state.get('version')}, this ESI "
                              f"reads {VERSION}; start a new run (another --out)")
    return state


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run (older ones are tried if the newest cannot be read)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_training_checkpoint(path)
        except CheckpointError as exc:
            log.warning("skipping unreadable checkpoint: %s", exc)
    return None
