"""AdamW parameter groups and the paper's learning-rate schedule (warm-up, then step decay), step-based."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# Name fragments of parameters that get no weight decay: norms (incl. ConvNeXt-V2's GRN gamma/beta and
# layer-scale gammas), biases, the temperature, and position embeddings. Anything with fewer than 2 dims too.
NO_DECAY_KEYS = ("bias", "norm", "grn", "gamma", "beta", "layer_scale", "logit_scale", "position",
                 "pos_embed", "pos_emb")


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """True when ``param`` (named ``name``) should not be weight-decayed."""
    lname = name.lower()
    return param.ndim < 2 or any(key in lname for key in NO_DECAY_KEYS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed weights and the rest. Frozen parameters are left out."""
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if no_weight_decay(name, p):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (the group names are kept for inspection)."""
    groups = param_groups(model, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


class WarmupStepDecay:
    """LR multiplier at optimizer step ``s`` (0-based): linear warm-up, then x factor every ``decay_every``.

    Warm-up covers ``round(warmup_epochs * steps_per_epoch)`` steps with multiplier (s + 1) / warmup_steps,
    so the first step already moves. After warm-up the multiplier is ``factor ** floor(s / decay_steps)``
    with ``decay_steps = round(decay_every * steps_per_epoch)``; decay epochs are counted from the start of
    training (the paper: 5 warm-up epochs, then x0.1 at epochs 10 and 20). A plain class (not a lambda) so
    the scheduler's state_dict pickles.
    """

    def __init__(self, steps_per_epoch: int, warmup_epochs: float, decay_every: float, factor: float) -> None:
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        self.decay_steps = max(1, int(round(decay_every * steps_per_epoch)))
        self.factor = factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.factor ** math.floor(step / self.decay_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, warmup_epochs: float,
                    decay_every: float, decay_factor: float) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with :class:`WarmupStepDecay`; call ``scheduler.step()`` once per optimizer step."""
    fn = WarmupStepDecay(steps_per_epoch, warmup_epochs, decay_every, decay_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
