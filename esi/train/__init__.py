"""Pretraining (the training app): loop, distributed setup, schedule, data and checkpoints.

This package may import the rest of ``esi``; nothing in ``esi`` imports it (as open_clip_train vs open_clip).
Entry points: :func:`esi.train.loop.pretrain` with a :class:`esi.train.config.PretrainConfig`, and the
``esi pretrain`` command (also under ``torchrun``).
"""

from esi.train.config import AugmentConfig, PretrainConfig

__all__ = ["AugmentConfig", "PretrainConfig", "PretrainResult", "pretrain"]


def __getattr__(name: str):  # the loop imports torch: load it on first use only
    if name in ("pretrain", "PretrainResult"):
        from esi.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
