"""Freezing before DDP wraps the model: what an ablation never trains, and the encoder stages a recipe keeps."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from esi.errors import ConfigError
from esi.train.config import PretrainConfig

if TYPE_CHECKING:
    from esi.models.coca import EsiModel
    from esi.train.data import PretrainDataset

log = logging.getLogger(__name__)


def branches(cfg: PretrainConfig) -> dict[str, bool]:
    """Which model branches the loss needs (a zero weight skips that branch's compute)."""
    return {"contrastive": cfg.lambda_con > 0, "caption": cfg.lambda_cap > 0}


def freeze_unused(model: EsiModel, dataset: PretrainDataset, cfg: PretrainConfig) -> list[str]:
    """Freeze the parameters an ablation (lambda_con or lambda_cap = 0) never trains.

    They would get no gradient anyway (AdamW skips them); freezing them lets DDP run without
    find_unused_parameters. Found by one local forward/backward on two records, so it follows the model.
    """
    from esi.losses import CoCaLoss
    from esi.train.data import collate

    batch = collate([dataset[i] for i in range(min(2, len(dataset)))])
    dev = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
    out = model(batch["signal"].to(dev), ids, mask, **branches(cfg))
    CoCaLoss(cfg.lambda_con, cfg.lambda_cap, rank=0, world_size=1)(out, ids, mask)["loss"].backward()
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for n, p in model.named_parameters():
        p.grad = None
        if n in frozen:
            p.requires_grad_(False)
    log.info("ablation (lambda_con=%s, lambda_cap=%s): %d unused parameter tensors frozen", cfg.lambda_con,
             cfg.lambda_cap, len(frozen))
    return frozen


def freeze_encoder_stages(model: EsiModel, n: int) -> list[str]:
    """Keep the ECG encoder's first ``n`` stages and their downsampling layers at their current weights.

    Needs a staged encoder (ConvNeXt: ``downsample`` and ``stages``); returns the frozen parameter names.
    """
    encoder = model.ecg_encoder
    stages, downsample = getattr(encoder, "stages", None), getattr(encoder, "downsample", None)
    if stages is None or downsample is None:
        raise ConfigError(f"freeze_ecg_stages={n}: the {type(encoder).__name__} encoder has no stages to freeze; "
                          "use a ConvNeXt model (esi_cpu, esi_base, ...) or freeze_ecg_stages=0")
    if n > len(stages):
        raise ConfigError(f"freeze_ecg_stages={n}: the encoder has {len(stages)} stages; expected 0-{len(stages)}")
    frozen = []
    for i in range(n):
        for part, module in ((f"downsample.{i}", downsample[i]), (f"stages.{i}", stages[i])):
            for name, p in module.named_parameters():
                p.requires_grad_(False)
                frozen.append(f"ecg_encoder.{part}.{name}")
    log.info("ECG encoder stages 1-%d kept at their initial weights (%d tensors, %d parameters)", n, len(frozen),
             sum(p.numel() for s in list(stages)[:n] + list(downsample)[:n] for p in s.parameters()))
    return frozen
