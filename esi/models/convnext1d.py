"""ConvNeXt-V2 for 12-lead ECGs: the 2D network with every 2D operation made 1D.

Stem: a strided "patchify" convolution (kernel = stride = 4); four stages separated by LayerNorm + stride-2
convolutions; each block is a depthwise convolution (k=7), LayerNorm over channels, and a pointwise MLP with
global response normalisation (GRN). ``forward_features`` returns the final stage as a token map (B, T', C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from esi.models.encoders import register_model
from esi.models.layers import GRN, ChannelLayerNorm, DropPath


class Block(nn.Module):
    """One ConvNeXt-V2 block: depthwise conv -> LN -> Linear(4x) -> GELU -> GRN -> Linear -> residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # channels-last here, so this normalises over channels
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + self.drop_path(y.transpose(1, 2))


class ConvNeXtV2_1d(nn.Module):  # noqa: N801 - the architecture's own name
    """1D ConvNeXt-V2.

    Args:
        depths: blocks per stage.
        dims: channels per stage; ``width`` is ``dims[-1]``.
        in_chans: input leads (12).
        num_classes: size of an optional classification head (global average pool -> LayerNorm -> Linear);
            0 means no head, which is how the CoCa model uses it.
        drop_path_rate: stochastic depth, increasing linearly to this value over all blocks.
        patch_size: stem kernel and stride.
        kernel_size: depthwise kernel size.

    Parameter counting (asserted in tests/models/test_encoders.py): the paper's 26.8M (ESI-tiny) and 85.6M
    (ESI) are the encoder as used for pretraining: stem, stages and the final LayerNorm, without a
    classification head (26,814,144 and 85,558,528 here). A 71-class PTB-XL head (LayerNorm + Linear) adds
    56k / 75k parameters, which keeps both within 0.1% of the paper's figures.
    """

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        in_chans: int = 12,
        num_classes: int = 0,
        drop_path_rate: float = 0.0,
        patch_size: int = 4,
        kernel_size: int = 7,
    ) -> None:
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError(f"depths {tuple(depths)} and dims {tuple(dims)} must have the same length")
        self.width = int(dims[-1])
        self.in_chans = in_chans
        self.grad_checkpointing = False
        self.downsample = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv1d(in_chans, dims[0], patch_size, stride=patch_size), ChannelLayerNorm(dims[0])
                )
            ]
        )
        for i in range(1, len(dims)):
            self.downsample.append(
                nn.Sequential(ChannelLayerNorm(dims[i - 1]), nn.Conv1d(dims[i - 1], dims[i], 2, stride=2))
            )
        n_blocks = sum(depths)
        rates = [drop_path_rate * i / max(1, n_blocks - 1) for i in range(n_blocks)]
        self.stages = nn.ModuleList()
        start = 0
        for depth, dim in zip(depths, dims, strict=True):
            self.stages.append(
                nn.Sequential(*[Block(dim, rates[start + j], kernel_size) for j in range(depth)])
            )
            start += depth
        self.norm = nn.LayerNorm(self.width, eps=1e-6)  # on the token map (channels last)
        self.num_classes = num_classes
        if num_classes:
            self.head_norm = nn.LayerNorm(self.width, eps=1e-6)
            self.head = nn.Linear(self.width, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass (less memory on long ECGs)."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, in_chans, T) -> token map (B, T / (patch_size * 8), width)."""
        for down, stage in zip(self.downsample, self.stages, strict=True):
            x = down(x)
            if self.grad_checkpointing and self.training:
                for block in stage:
                    x = checkpoint(block, x, use_reentrant=False)
            else:
                x = stage(x)
        return self.norm(x.transpose(1, 2))

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool of the token map, then the classification head unless ``pre_logits``."""
        pooled = tokens.mean(dim=1)
        if pre_logits or not self.num_classes:
            return pooled
        return self.head(self.head_norm(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _convnext(depths: Sequence[int], dims: Sequence[int], **kwargs: object) -> ConvNeXtV2_1d:
    return ConvNeXtV2_1d(depths, dims, **kwargs)  # type: ignore[arg-type]


@register_model
def convnextv2_atto(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((2, 2, 6, 2), (40, 80, 160, 320), **kwargs)


@register_model
def convnextv2_femto(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((2, 2, 6, 2), (48, 96, 192, 384), **kwargs)


@register_model
def convnextv2_pico(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((2, 2, 6, 2), (64, 128, 256, 512), **kwargs)


@register_model
def convnextv2_nano(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((2, 2, 8, 2), (80, 160, 320, 640), **kwargs)


@register_model
def convnextv2_tiny(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((3, 3, 9, 3), (96, 192, 384, 768), **kwargs)


@register_model
def convnextv2_base(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((3, 3, 27, 3), (128, 256, 512, 1024), **kwargs)


@register_model
def convnextv2_large(**kwargs: object) -> ConvNeXtV2_1d:
    return _convnext((3, 3, 27, 3), (192, 384, 768, 1536), **kwargs)


@register_model
def test_convnext(**kwargs: object) -> ConvNeXtV2_1d:
    """A few thousand parameters, for unit tests."""
    return _convnext((1, 1, 2, 1), (16, 24, 32, 48), **kwargs)
