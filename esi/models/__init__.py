"""ESI models: ECG encoders (esi.models.encoders), text tower, the CoCa-style EsiModel, configs and checkpoints.

Heavy imports (torch, transformers) happen when the names are first used, so ``import esi.models`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esi.models.coca import EsiModel
    from esi.models.factory import create_model, list_models

__all__ = [
    "EsiModel",
    "create_model",
    "list_models",
    "load_model",
    "save_checkpoint",
    "create_encoder",
    "list_encoders",
    "register_model",
]

_WHERE = {
    "EsiModel": "esi.models.coca",
    "create_model": "esi.models.factory",
    "list_models": "esi.models.factory",
    "load_model": "esi.models.checkpoint",
    "save_checkpoint": "esi.models.checkpoint",
    "create_encoder": "esi.models.encoders",
    "list_encoders": "esi.models.encoders",
    "register_model": "esi.models.encoders",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'esi.models' has no attribute {name!r}")
