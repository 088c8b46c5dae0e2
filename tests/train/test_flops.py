"""The corrected FLOP counter on single ops, against hand counts (stock FlopCounterMode gets both wrong)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from esi.train.flops import flop_counter

B, C, T, K = 2, 8, 50, 7


def _count(counter, fn) -> int:  # type: ignore[no-untyped-def]
    with counter:
        fn()
    return counter.get_total_flops()


def test_depthwise_conv_forward_and_backward() -> None:
    def step() -> None:
        x = torch.randn(B, C, T, requires_grad=True)
        w = torch.randn(C, 1, K, requires_grad=True)
        F.conv1d(x, w, padding=K // 2, groups=C).sum().backward()

    per_pass = 2 * B * C * T * K  # one multiply-add per output sample and kernel tap
    assert _count(flop_counter(), step) == 3 * per_pass  # forward, grad input, grad weight
    assert _count(FlopCounterMode(display=False), step) == 2 * per_pass + C * per_pass  # the stock over-count


def test_dense_conv_is_counted_as_before() -> None:
    def step() -> None:
        x = torch.randn(B, 4, T, requires_grad=True)
        w = torch.randn(6, 4, 3, requires_grad=True)
        F.conv1d(x, w, stride=1).sum().backward()

    stock = _count(FlopCounterMode(display=False), step)
    assert _count(flop_counter(), step) == stock == 3 * 2 * B * 6 * 4 * 3 * (T - 2)


def test_cpu_attention_counts_like_its_matmuls() -> None:
    h, lq, lk, e = 2, 6, 9, 4

    def tensors() -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        return tuple(torch.randn(B, h, n, e, generator=g, requires_grad=True) for n in (lq, lk, lk))

    def fused() -> None:
        F.scaled_dot_product_attention(*tensors()).sum().backward()

    def explicit() -> None:
        q, k, v = tensors()
        (torch.softmax(q @ k.transpose(-1, -2) / e**0.5, dim=-1) @ v).sum().backward()

    forward = 2 * 2 * B * h * lq * lk * e  # QK^T and PV
    assert _count(flop_counter(), explicit) == 3 * forward  # backward: dQ, dK, dP, dV
    # the fused kernel's backward also recomputes QK^T: counted as torch counts it for CUDA attention
    assert _count(flop_counter(), fused) == 3 * forward + forward // 2
    assert _count(FlopCounterMode(display=False), fused) == 0  # what the stock counter sees on CPU
