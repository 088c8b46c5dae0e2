"""AdamW parameter groups and the paper's learning-rate schedule (warm-up, then step decay), step-based."""

from __future__ import annotations

import math
import warnings
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
                    betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                    fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (the group names are kept for inspection).

    ``fused=None`` picks the fused kernel (one pass over all parameters instead of a loop of ~10 elementwise
    ops per tensor; torch's default on CPU is that loop) when every trainable parameter is a float tensor
    on CPU or CUDA; False keeps torch's default.
    """
    groups = param_groups(model, weight_decay)
    if fused is None:
        params = [p for g in groups for p in g["params"]]
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


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


def seek(scheduler: torch.optim.lr_scheduler.LRScheduler, step: int) -> None:
    """Put ``scheduler`` (and its optimizer's lr) at schedule position ``step`` (0-based optimizer step).

    A resumed run rebuilds its schedule for its own epoch length and seeks to where it stands in epochs, so
    warm-up and decay stay in epochs when the number of ranks (hence steps per epoch) changed.
    """
    scheduler.last_epoch = step - 1
    with warnings.catch_warnings():  # no optimizer step happened yet: not the misuse torch warns about
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        scheduler.step()
