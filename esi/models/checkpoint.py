"""Checkpoints: one file holding the model config, the state dict and extra metadata; strict loading."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esi.errors import CheckpointError, ConfigError

FORMAT = "esi-checkpoint"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: a temporary file in the same folder, fsync, rename, fsync
    of the folder. A reader never sees a half-written file and a crash leaves the previous file in place.

    The one writer of every ESI checkpoint (model files and training checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself is durable once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def checkpoint_payload(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of ``model``: format marker, config, state dict, text assets and ``extra``.

    Training checkpoints are this same dict with a ``training`` section added (esi.train.checkpointing).
    """
    inner = getattr(model, "module", model)  # accept a DDP-wrapped model
    inner = getattr(inner, "_orig_mod", inner)  # and a torch.compile'd one
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": inner.config_dict(),
        "state_dict": inner.state_dict(),
        "extra": extra,
        # Tokenizer and text-encoder config travel with the weights: loading needs no hub id or mounted path.
        "text_assets": inner.text.export_assets(),
    }


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (config_dict + state_dict) and ``extra`` to ``path`` atomically (see atomic_save)."""
    return atomic_save(checkpoint_payload(model, **extra), path)


def read_checkpoint(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """The raw checkpoint dict (format, version, config, state_dict, extra), checked for shape.

    ``weights_only=True`` (the safe default) unpickles only tensors and plain containers, so ``extra``
    should hold tensors, numbers, strings, lists and dicts (convert numpy RNG states to lists); pass
    False only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; fix: pass the path of a file written by "
            "save_checkpoint (e.g. RUN_DIR/model.pt or RUN_DIR/checkpoints/step-000000123.pt)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # torch raises many types for a foreign file (pickle, zip, EOF ...)
        raise CheckpointError(
            f"{path} is not a readable ESI checkpoint ({type(exc).__name__}: {exc}); fix: "
            "pass a file written by save_checkpoint"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an ESI checkpoint (no '{FORMAT}' format marker); fix: pass a file "
            "written by esi.models.checkpoint.save_checkpoint"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload['version']}, newer than this ESI "
            f"({VERSION}); fix: upgrade esi"
        )
    return payload


def load_state_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load every key or fail: missing/unexpected keys and shape mismatches are named in the error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mismatched:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "")

        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if mismatched:
            parts.append(
                "shape mismatches: "
                + show([f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched])
            )
        raise CheckpointError(
            f"{source} does not match the model: "
            + "; ".join(parts)
            + ". Fix: load it with the config it was saved with (load_model does this)"
        )
    model.load_state_dict(state_dict, strict=True)


def model_from_payload(payload: dict[str, Any], source: str = "checkpoint", offline: bool | None = None) -> Any:
    """The EsiModel of a checkpoint dict, weights loaded strictly (train mode, as built).

    The text encoder is built from the checkpoint's config and tokenizer files only (``text_pretrained=False``):
    nothing is looked up or downloaded, the checkpoint's weights replace pretrained ones anyway.
    """
    from esi.models.coca import EsiModel

    try:
        model = EsiModel(
            payload["config"], text_pretrained=False, offline=offline, text_assets=payload.get("text_assets")
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source} holds an invalid model config: {exc}") from exc
    load_state_strict(model, payload["state_dict"], source=source)
    model.checkpoint_extra = payload.get("extra", {})
    return model


def load_model(path: str | Path, offline: bool | None = None) -> Any:
    """Rebuild the EsiModel stored in a checkpoint and load its weights strictly (eval mode).

    Reads model files (RUN_DIR/model.pt) and training checkpoints alike (one format).
    ``model.checkpoint_extra`` holds the extra metadata saved with it.
    """
    payload = read_checkpoint(path)
    return model_from_payload(payload, source=f"checkpoint {path}", offline=offline).eval()
