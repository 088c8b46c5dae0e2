"""Pretraining losses: symmetric InfoNCE gathered across ranks, and captioning cross-entropy."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients to every rank's input."""
    if world_size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE (ECG->text and text->ECG) over the global batch.

    Under torch.distributed each rank gathers every rank's embeddings with gradients and scores its local rows
    against all of them; the positives of rank r's row i sit at column ``r * local_batch + i`` (without this
    offset each rank would only contrast its own batch). Each rank's loss is the mean over its rows, so the
    average over ranks (what DDP's gradient averaging optimises) equals the loss over the concatenated batch.
    All ranks must use the same local batch size.

    Args:
        rank, world_size: override the values read from torch.distributed (default: detected).
    """

    def __init__(self, rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        self._rank, self._world_size = rank, world_size

    def logits(
        self,
        ecg_embedding: torch.Tensor,
        text_embedding: torch.Tensor,
        logit_scale: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits_per_ecg, logits_per_text, labels): local rows against the gathered batch."""
        rank, world = _dist_info(self._rank, self._world_size)
        # Similarities in float32 even under bf16 autocast: at scale 100 bf16 rounding moves logits by ~0.4.
        ecg_embedding, text_embedding = ecg_embedding.float(), text_embedding.float()
        logit_scale = logit_scale.float()
        all_ecg = gather_with_grad(ecg_embedding, world)
        all_text = gather_with_grad(text_embedding, world)
        logits_per_ecg = logit_scale * ecg_embedding @ all_text.T
        logits_per_text = logit_scale * text_embedding @ all_ecg.T
        local = ecg_embedding.shape[0]
        labels = torch.arange(local, device=ecg_embedding.device) + rank * local
        return logits_per_ecg, logits_per_text, labels

    def forward(
        self, ecg_embedding: torch.Tensor, text_embedding: torch.Tensor, logit_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, ecg->text top-1 accuracy over the local rows)."""
        logits_per_ecg, logits_per_text, labels = self.logits(ecg_embedding, text_embedding, logit_scale)
        loss = (F.cross_entropy(logits_per_ecg, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        accuracy = (logits_per_ecg.detach().argmax(dim=1) == labels).float().mean()
        return loss, accuracy


def _global_count(n: torch.Tensor, world_size: int) -> torch.Tensor:
    """``n`` summed over ranks (no gradient; a no-op in one process)."""
    if world_size == 1:
        return n
    total = n.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


class CaptionLoss(nn.Module):
    """Next-token cross-entropy: logits[:, :-1] predict input_ids[:, 1:]; padded targets are ignored.

    The mean is over the valid target tokens of the whole global batch: each rank divides its summed CE by
    (tokens over all ranks / world size), so the average over ranks that DDP optimises is exactly the
    single-process loss of the concatenated batch, whatever the caption lengths on each rank. With gradient
    accumulation the trainer passes ``divisor`` = tokens of the whole step / (world size x micro-batches), which
    makes the accumulated gradient that of one batch too.

    Args:
        pad_token_id: also ignore targets equal to this id (in addition to attention_mask == 0).
        label_smoothing: passed to cross_entropy.
        rank, world_size: override the values read from torch.distributed (default: detected).
    """

    def __init__(
        self,
        pad_token_id: int | None = None,
        label_smoothing: float = 0.0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.pad_token_id = pad_token_id
        self.label_smoothing = label_smoothing
        self._rank, self._world_size = rank, world_size

    def forward(
        self, logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Dense form: ``logits`` (B, L, V) of every position, ``input_ids`` (B, L)."""
        targets = input_ids[:, 1:]
        ignore = torch.zeros_like(targets, dtype=torch.bool)
        if attention_mask is not None:
            ignore |= attention_mask[:, 1:] == 0
        if self.pad_token_id is not None:
            ignore |= targets == self.pad_token_id
        targets = targets.masked_fill(ignore, -100)
        pred = logits[:, :-1]
        return self.of_targets(pred.reshape(-1, pred.shape[-1]), targets.reshape(-1))

    def of_targets(
        self, logits: torch.Tensor, targets: torch.Tensor, divisor: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sparse form: ``logits`` (N, V) and ``targets`` (N,) (-100 or ``pad_token_id`` ignored).

        ``divisor`` replaces the per-rank token count the summed CE is divided by (see the class docstring).
        """
        if self.pad_token_id is not None:
            targets = targets.masked_fill(targets == self.pad_token_id, -100)
        total = F.cross_entropy(
            logits.float(), targets, ignore_index=-100, label_smoothing=self.label_smoothing, reduction="sum"
        )
        if divisor is None:
            _, world = _dist_info(self._rank, self._world_size)
            n = _global_count((targets != -100).sum().to(total.dtype), world)
            divisor = n.clamp(min=1.0) / world
        return total / divisor


class CoCaLoss(nn.Module):
    """lambda_con * InfoNCE + lambda_cap * captioning CE (the paper uses 1.0 and 1.0).

    A weight of 0 skips that computation (the ablations); the returned dict always has ``loss``,
    ``contrastive``, ``caption`` (0 when skipped) and ``accuracy`` (ECG->text top-1; over the local batch only
    when the contrastive term is skipped).
    """

    def __init__(
        self,
        lambda_con: float = 1.0,
        lambda_cap: float = 1.0,
        pad_token_id: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if lambda_con < 0 or lambda_cap < 0 or lambda_con + lambda_cap == 0:
            raise ValueError(
                f"loss weights must be >= 0 and not both 0 (lambda_con={lambda_con}, lambda_cap={lambda_cap})"
            )
        self.lambda_con, self.lambda_cap = float(lambda_con), float(lambda_cap)
        self.contrastive = ContrastiveLoss(rank, world_size)
        self.caption = CaptionLoss(pad_token_id, rank=rank, world_size=world_size)

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        caption_divisor: float | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted loss; ``caption_divisor`` as ``CaptionLoss.of_targets``'s ``divisor``."""
        ref = next(iter(outputs.values()))
        zero = ref.new_zeros(()).float()
        con, cap, acc = zero, zero, zero
        if self.lambda_con:
            con, acc = self.contrastive(
                outputs["ecg_embedding"], outputs["text_embedding"], outputs["logit_scale"]
            )
        elif "ecg_embedding" in outputs and "text_embedding" in outputs:
            with torch.no_grad():
                sims = outputs["ecg_embedding"] @ outputs["text_embedding"].T
                acc = (sims.argmax(dim=1) == torch.arange(sims.shape[0], device=sims.device)).float().mean()
        if self.lambda_cap and "caption_targets" in outputs:  # the model's valid-positions-only form
            cap = self.caption.of_targets(outputs["caption_logits"], outputs["caption_targets"], caption_divisor)
        elif self.lambda_cap:
            cap = self.caption(outputs["caption_logits"], input_ids, attention_mask)
        loss = self.lambda_con * con + self.lambda_cap * cap
        return {"loss": loss, "contrastive": con.detach(), "caption": cap.detach(), "accuracy": acc}
