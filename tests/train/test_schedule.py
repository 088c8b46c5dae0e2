"""AdamW parameter groups and the warm-up / step-decay learning-rate schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from esi.train.schedule import WarmupStepDecay, build_optimizer, build_scheduler, param_groups


class TestWarmupStepDecay:
    def test_paper_recipe_values(self) -> None:
        # 10 steps/epoch, 5 warm-up epochs, x0.1 every 10 epochs, 30 epochs
        f = WarmupStepDecay(steps_per_epoch=10, warmup_epochs=5, decay_every=10, factor=0.1)
        assert f(0) == pytest.approx(1 / 50)
        assert f(24) == pytest.approx(25 / 50)
        assert f(49) == pytest.approx(1.0)
        assert f(50) == pytest.approx(1.0)
        assert f(99) == pytest.approx(1.0)
        assert f(100) == pytest.approx(0.1)
        assert f(199) == pytest.approx(0.1)
        assert f(200) == pytest.approx(0.01)
        assert f(299) == pytest.approx(0.01)

    def test_no_warmup_and_fractional_epochs(self) -> None:
        f = WarmupStepDecay(steps_per_epoch=4, warmup_epochs=0, decay_every=1.5, factor=0.5)
        assert [f(s) for s in range(13)] == pytest.approx(
            [1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25])

    def test_warmup_is_linear_and_starts_above_zero(self) -> None:
        f = WarmupStepDecay(steps_per_epoch=3, warmup_epochs=2, decay_every=100, factor=0.1)
        assert [f(s) for s in range(7)] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, 1.0])

    def test_scheduler_drives_optimizer_lr(self) -> None:
        model = nn.Linear(3, 2)
        opt = build_optimizer(model, lr=1e-3, weight_decay=0.1)
        sched = build_scheduler(opt, steps_per_epoch=2, warmup_epochs=1, decay_every=2, decay_factor=0.1)
        lrs = []
        for _ in range(6):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
        # the schedule survives a state_dict round trip (resume)
        opt2 = build_optimizer(model, lr=1e-3, weight_decay=0.1)
        sched2 = build_scheduler(opt2, steps_per_epoch=2, warmup_epochs=1, decay_every=2, decay_factor=0.1)
        sched2.load_state_dict(sched.state_dict())
        assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.position_embedding = nn.Parameter(torch.zeros(8, 4))
        self.grn_gamma = nn.Parameter(torch.zeros(1, 1, 4))
        self.logit_scale = nn.Parameter(torch.tensor(2.6))
        self.word_embeddings = nn.Embedding(10, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_param_groups_exclude_norms_biases_temperature_positions() -> None:
    groups = param_groups(_Toy(), weight_decay=0.2)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert sorted(decay["names"]) == ["proj.weight", "word_embeddings.weight"]
    assert sorted(no_decay["names"]) == ["grn_gamma", "logit_scale", "norm.bias", "norm.weight",
                                         "position_embedding", "proj.bias"]
    assert not any(n.startswith("frozen") for g in groups for n in g["names"])


def test_param_groups_on_the_test_model() -> None:
    from esi.models import create_model

    model = create_model("esi_test")
    decay, no_decay = param_groups(model, 0.05)
    assert "logit_scale" in no_decay["names"]
    assert all(p.ndim >= 2 for p in decay["params"])
    assert not any("norm" in n.lower() or n.endswith("bias") for n in decay["names"])
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(no_decay["params"]) == n_trainable
