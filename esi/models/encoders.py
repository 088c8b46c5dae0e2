"""A registry of ECG encoders: each variant is a small function decorated with :func:`register_model`.

Every registered encoder maps ``(B, in_chans, T)`` to a token map ``(B, T', width)`` through
``forward_features`` and exposes its token width as the ``width`` attribute.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from esi.errors import ModelNotFoundError

F = TypeVar("F", bound=Callable[..., nn.Module])

_ENCODERS: dict[str, Callable[..., nn.Module]] = {}
# Modules whose import registers encoders; imported lazily so `import esi.models.encoders` stays cheap.
_ENCODER_MODULES = ("esi.models.convnext1d", "esi.models.xresnet1d", "esi.models.vit1d")


def register_model(fn: F) -> F:
    """Register an encoder constructor under its function name (``convnextv2_tiny`` ...)."""
    name = fn.__name__
    if name in _ENCODERS and _ENCODERS[name] is not fn:
        raise ValueError(
            f"encoder {name!r} is registered twice ({_ENCODERS[name].__module__} and {fn.__module__})"
        )
    _ENCODERS[name] = fn
    return fn


def _load_all() -> None:
    for module in _ENCODER_MODULES:
        importlib.import_module(module)


def list_encoders(pattern: str | None = None) -> list[str]:
    """Names of all registered encoders, sorted; ``pattern`` keeps names containing it."""
    _load_all()
    return sorted(n for n in _ENCODERS if pattern is None or pattern in n)


def create_encoder(name: str, **kwargs: object) -> nn.Module:
    """Build the encoder registered as ``name``, with keyword overrides (``in_chans``, ``drop_path_rate``)."""
    _load_all()
    if name not in _ENCODERS:
        raise ModelNotFoundError(
            f"unknown ECG encoder {name!r}; known encoders: {', '.join(sorted(_ENCODERS))}. "
            "Fix: set ecg_cfg.encoder to one of these, or register a new one with @register_model."
        )
    return _ENCODERS[name](**kwargs)
