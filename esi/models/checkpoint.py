"""Checkpoints: one file holding the model config, the state dict and extra metadata; strict loading."""

from __future__ import annotations

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


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (config_dict + state_dict) and ``extra`` to ``path`` atomically (temp file + rename).

    A reader never sees a half-written file: a crash leaves the previous checkpoint in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = getattr(model, "module", model)  # accept a DDP-wrapped model
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": inner.config_dict(),
        "state_dict": inner.state_dict(),
        "extra": extra,
        # Tokenizer and text-encoder config travel with the weights: loading needs no hub id or mounted path.
        "text_assets": inner.text.export_assets(),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
            "save_checkpoint (e.g. RUN_DIR/checkpoints/last.pt)"
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


def load_model(path: str | Path, offline: bool | None = None) -> Any:
    """Rebuild the EsiModel stored in a checkpoint and load its weights strictly (eval mode).

    The text encoder is built from its config only: the checkpoint's weights replace pretrained ones anyway.
    ``model.checkpoint_extra`` holds the extra metadata saved with it.
    """
    from esi.models.coca import EsiModel

    payload = read_checkpoint(path)
    try:
        model = EsiModel(
            payload["config"], text_pretrained=False, offline=offline, text_assets=payload.get("text_assets")
        )
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid model config: {exc}") from exc
    load_state_strict(model, payload["state_dict"], source=f"checkpoint {path}")
    model.checkpoint_extra = payload.get("extra", {})
    return model.eval()
