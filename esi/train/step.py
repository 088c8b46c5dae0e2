"""One optimizer step of pretraining: micro-batches forward/backward (no DDP all-reduce before the last one),
clipping, the non-finite skip, AdamW, the in-place logit-scale clamp and the scheduler."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from esi.errors import ConfigError
from esi.train.distributed import DistInfo, all_reduce_mean

if TYPE_CHECKING:
    from esi.losses import CoCaLoss
    from esi.models.coca import EsiModel

METRICS = ("loss", "contrastive", "caption", "accuracy")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA (auto or asked for), None (fp32) otherwise. Never fp16."""
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision == "bf16":
            raise ConfigError("precision=bf16 autocasts on CUDA only; use --precision auto or fp32 on CPU")
        return None
    if not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise ConfigError("this GPU does not support bf16; use --precision fp32")
        return None
    return torch.bfloat16


@dataclass
class StepResult:
    """What one optimizer step did: metrics averaged over its micro-batches and all ranks."""

    values: dict[str, float]  # METRICS -> value (may be non-finite)
    grad_norm: float  # global norm before clipping
    lr: float  # the learning rate the step used
    logit_scale: float  # exp(logit_scale) in the last forward pass
    finite: bool  # False: the update was skipped


class Stepper:
    """Runs micro-batches and optimizer steps for one model.

    Args:
        model: what is called (the DDP wrapper under torchrun, else ``core``).
        core: the EsiModel itself (its parameters, logit-scale clamp).
        loss_fn: the CoCa loss.
        optimizer, scheduler: AdamW and its schedule (stepped once per optimizer step, skipped or not).
        info: ranks and device.
        grad_accum: micro-batches per optimizer step.
        grad_clip: max global gradient norm (None or 0: no clipping).
        autocast_dtype: bf16 autocast on CUDA, None for fp32.
        branches: which model branches the loss needs (``contrastive``, ``caption``).
    """

    def __init__(self, model: nn.Module, core: EsiModel, loss_fn: CoCaLoss, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, info: DistInfo, *, grad_accum: int = 1,
                 grad_clip: float | None = None, autocast_dtype: torch.dtype | None = None,
                 branches: dict[str, bool] | None = None) -> None:
        self.model, self.core, self.loss_fn = model, core, loss_fn
        self.optimizer, self.scheduler, self.info = optimizer, scheduler, info
        self.grad_accum, self.clip = grad_accum, grad_clip if grad_clip else float("inf")
        self.autocast_dtype = autocast_dtype
        self.branches = branches or {"contrastive": True, "caption": True}
        self.params = [p for p in core.parameters() if p.requires_grad]
        self._acc = torch.zeros(len(METRICS), dtype=torch.float32, device=info.device)  # no host sync
        self._logit_scale = torch.full((), float("nan"))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=self.autocast_dtype)

    def _sync(self, last: bool) -> contextlib.AbstractContextManager:
        # DDP: no gradient all-reduce on the micro-batches before the last one of a step
        if self.info.distributed and not last:
            return self.model.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def caption_divisor(self, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Caption targets of the whole step (all micro-batches and ranks) / (ranks x micro-batches): the CE
        divisor that makes accumulated micro-batches train like one batch (see esi.losses.CaptionLoss)."""
        n = sum(int(b["attention_mask"][:, 1:].sum()) for b in batches)
        total = torch.tensor(float(n), device=self.info.device)
        if self.info.distributed:
            import torch.distributed as dist

            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.clamp(min=1.0) / (self.info.world_size * len(batches))

    def micro(self, batch: dict[str, torch.Tensor], last: bool, caption_divisor: torch.Tensor | None = None
              ) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch (``last``: the step's final one, which all-reduces).

        Returns this rank's detached losses (METRICS) of the micro-batch.
        """
        dev = self.info.device
        sig = batch["signal"].to(dev, non_blocking=True)
        ids = batch["input_ids"].to(dev, non_blocking=True)
        mask = batch["attention_mask"].to(dev, non_blocking=True)
        with self._sync(last):
            with self._autocast():
                out = self.model(sig, ids, mask, **self.branches, caption_targets_only=True)
                losses = self.loss_fn(out, ids, mask, caption_divisor)
            (losses["loss"] / self.grad_accum).backward()
        values = torch.stack([torch.as_tensor(losses[k], device=dev).detach().float().reshape(()) for k in METRICS])
        self._acc += values
        self._logit_scale = out["logit_scale"].detach()
        return dict(zip(METRICS, values, strict=True))

    def step(self) -> StepResult:
        """Clip, update (unless a loss or gradient is non-finite), clamp the temperature, advance the lr."""
        vals = all_reduce_mean(self.info, self._acc / self.grad_accum).double().cpu()
        self._acc.zero_()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip))
        lr = float(self.optimizer.param_groups[0]["lr"])
        finite = math.isfinite(grad_norm) and bool(torch.isfinite(vals).all())
        if finite:
            self.optimizer.step()
            self.core.clamp_logit_scale_()  # a parameter past the bound would get no gradient again
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step is not the misuse torch warns about
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        return StepResult(dict(zip(METRICS, vals.tolist(), strict=True)), grad_norm, lr,
                          float(self._logit_scale.float().mean()), finite)

    def run(self, batches: Iterator[dict[str, torch.Tensor]]) -> StepResult:
        """One optimizer step over the next ``grad_accum`` micro-batches of ``batches``."""
        micro = [next(batches) for _ in range(self.grad_accum)]
        divisor = self.caption_divisor(micro)
        for i, batch in enumerate(micro):
            self.micro(batch, last=i == self.grad_accum - 1, caption_divisor=divisor)
        return self.step()
