"""One optimizer step (esi.train.step.Stepper): temperature clamp, gradient accumulation, fused AdamW."""

from __future__ import annotations

import math

import pytest
import torch

from esi.losses import CoCaLoss
from esi.models import create_model
from esi.train.distributed import DistInfo
from esi.train.schedule import build_optimizer, build_scheduler
from esi.train.step import Stepper

CAPTIONS = [
    "sinus rhythm",
    "atrial fibrillation with rapid ventricular response and no p waves",
    "left bundle branch block with wide qrs",
    "normal ecg",
    "sinus bradycardia with st depression in lateral leads and t wave inversion",
    "right bundle branch block",
    "inferior myocardial infarction with q waves in ii iii and avf",
    "first degree av block",
]


def _batches(model, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    enc = model.tokenize(CAPTIONS[:n])
    return [{"signal": torch.randn(n, 12, 640, generator=g), **enc}]


def _split(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """Micro-batches as collate makes them: each trimmed to its own longest caption."""
    out = []
    for chunk in zip(*(batch[k].chunk(parts) for k in ("signal", "input_ids", "attention_mask")), strict=True):
        width = int(chunk[2].sum(1).max())
        out.append({"signal": chunk[0], "input_ids": chunk[1][:, :width], "attention_mask": chunk[2][:, :width]})
    return out


def _stepper(model, grad_accum: int = 1, lr: float = 1e-3, lambda_con: float = 1.0, fused=None) -> Stepper:
    opt = build_optimizer(model, lr, 0.05, fused=fused)
    sched = build_scheduler(opt, steps_per_epoch=10, warmup_epochs=0, decay_every=10, decay_factor=0.1)
    return Stepper(model, model, CoCaLoss(lambda_con, 1.0), opt, sched, DistInfo(), grad_accum=grad_accum,
                   grad_clip=None)


def test_logit_scale_parameter_is_clamped_after_the_step_and_keeps_its_gradient() -> None:
    torch.manual_seed(0)
    model = create_model("esi_test")
    bound = model.config.max_logit_scale
    assert math.isclose(bound, math.log(100))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # far past the bound, as an unclamped parameter can drift
    stepper = _stepper(model)
    stepper.run(iter(_batches(model, 4)))
    assert model.logit_scale.item() == pytest.approx(bound, abs=1e-6)  # back at ln 100, not left at ~10
    # at the bound the forward clamp passes the gradient again (past it the gradient would be 0 forever)
    batch = _batches(model, 4, seed=1)[0]
    out = model(batch["signal"], batch["input_ids"], batch["attention_mask"])
    CoCaLoss()(out, batch["input_ids"], batch["attention_mask"])["loss"].backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs().item() > 0
    with torch.no_grad():
        model.logit_scale.fill_(-3.0)
    model.zero_grad()
    stepper.run(iter(_batches(model, 4)))
    assert model.logit_scale.item() == 0.0  # lower bound: the scale exp(.) never falls below 1


def test_gradient_accumulation_of_2x4_equals_one_batch_of_8() -> None:
    # Caption loss only: InfoNCE over 4 records has other negatives than over 8, so only the captioning term is
    # a per-token mean that accumulation can reproduce. Captions of different lengths: the micro-batches have
    # different token counts, which a per-micro-batch mean would weight wrongly.
    grads = []
    for accum in (1, 2):
        torch.manual_seed(0)
        model = create_model("esi_test").eval()  # no dropout: both runs see the same function
        batch = _batches(model, 8)[0]
        stepper = _stepper(model, grad_accum=accum, lambda_con=0.0)
        micro = _split(batch, accum)
        divisor = stepper.caption_divisor(micro)
        loss = sum(stepper.micro(b, last=i == accum - 1, caption_divisor=divisor)["loss"]
                   for i, b in enumerate(micro)) / accum
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        grads[-1]["_loss"] = loss
    one, two = grads
    assert set(one) == set(two) and len(one) > 10
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-6), name


def test_fused_adamw_matches_the_per_tensor_loop() -> None:
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = create_model("esi_test").eval()
        stepper = _stepper(model, fused=fused)
        assert bool(stepper.optimizer.defaults["fused"]) is fused
        for seed in range(3):
            stepper.run(iter(_batches(model, 4, seed)))
        models.append(model)
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4), name  # Adam moves every weight by ~lr = 1e-3
