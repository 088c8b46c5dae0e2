"""FLOPs of a training step, counted by torch's FlopCounterMode with two corrections.

Stock ``FlopCounterMode`` (torch 2.13) over-counts the weight gradient of a grouped convolution by the
number of groups (a depthwise convolution, as in every ConvNeXt block: by its channel count), and counts
nothing for scaled-dot-product attention on CPU (``_scaled_dot_product_flash_attention_for_cpu`` and its
backward are not in its registry). :func:`flop_counter` returns a counter with both corrected; like the stock
counter it counts multiply-adds as 2 FLOPs, matmul-like work only, attention as dense (causal or not), and
the attention backward as torch counts it for the CUDA kernels (five matmuls: QK^T is recomputed).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter as fc

aten = torch.ops.aten


def _t(shape: Any) -> list[int]:
    return [shape[1], shape[0], *list(shape[2:])]


def conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any, _stride: Any, _padding: Any,
                       _dilation: Any, transposed: bool, _output_padding: Any, groups: int, output_mask: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
    """convolution_backward: grad_input as torch counts it, grad_weight divided by ``groups``."""
    flops = 0
    if output_mask[0]:
        flops += fc.conv_flop_count(grad_out_shape, w_shape, fc.get_shape(out_shape[0]), not transposed)
    if output_mask[1]:
        grad_w = fc.get_shape(out_shape[1])
        if transposed:
            weight = fc.conv_flop_count(_t(grad_out_shape), _t(x_shape), _t(grad_w), transposed=False)
        else:
            weight = fc.conv_flop_count(_t(x_shape), _t(grad_out_shape), _t(grad_w), transposed=False)
        flops += weight // max(1, int(groups))
    return flops


def sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                  **kwargs: Any) -> int:
    """CPU flash attention forward: QK^T and PV."""
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def sdpa_cpu_backward_flop(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                           out_shape: Any = None, **kwargs: Any) -> int:
    """CPU flash attention backward: dQ, dK, dV, dP and the recomputed QK^T (torch's CUDA formula)."""
    return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CORRECTIONS = {
    aten.convolution_backward: conv_backward_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_cpu_backward_flop,
}


def flop_counter(display: bool = False) -> fc.FlopCounterMode:
    """A FlopCounterMode with the corrections above (use as a context manager; ``get_total_flops()``)."""
    return fc.FlopCounterMode(display=display, custom_mapping=CORRECTIONS)
