"""XResNet1d (the "bag of tricks" ResNet, made 1D), the strongest supervised model of the PTB-XL benchmark.

Used in the paper's backbone ablation. ``forward_features`` returns the last stage as a token map (B, T', C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from esi.models.encoders import register_model


def _conv_bn(
    ni: int, nf: int, ks: int, stride: int = 1, act: bool = True, zero_bn: bool = False
) -> nn.Sequential:
    bn = nn.BatchNorm1d(nf)
    # The last BN of each residual branch starts at zero so every block begins as the identity.
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers: list[nn.Module] = [nn.Conv1d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), bn]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Bottleneck (expansion 4) or basic (expansion 1) residual block with an avg-pool shortcut."""

    def __init__(self, expansion: int, ni: int, nh: int, stride: int, ks: int) -> None:
        super().__init__()
        nf, ni = nh * expansion, ni * expansion
        if expansion == 1:
            path = [_conv_bn(ni, nh, ks, stride), _conv_bn(nh, nf, ks, act=False, zero_bn=True)]
        else:
            path = [
                _conv_bn(ni, nh, 1),
                _conv_bn(nh, nh, ks, stride),
                _conv_bn(nh, nf, 1, act=False, zero_bn=True),
            ]
        self.convpath = nn.Sequential(*path)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if ni != nf:
            shortcut.append(_conv_bn(ni, nf, 1, act=False))
        self.idpath = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


class XResNet1d(nn.Module):
    """XResNet1d.

    Args:
        expansion: 4 for the bottleneck variants (50/101/152), 1 for the basic ones.
        layers: blocks per stage.
        in_chans: input leads.
        widths: hidden widths per stage (output width of a stage is width * expansion).
        stem: widths of the three stem convolutions.
        kernel_size: kernel size of the stem and block convolutions.
    """

    def __init__(
        self,
        expansion: int,
        layers: Sequence[int],
        in_chans: int = 12,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: Sequence[int] = (32, 32, 64),
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        sizes = [in_chans, *stem]
        self.stem = nn.Sequential(
            *[_conv_bn(sizes[i], sizes[i + 1], kernel_size, stride=2 if i == 0 else 1) for i in range(3)],
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        block_sizes = [stem[-1] // expansion, *widths]
        stages = []
        for i, n in enumerate(layers):
            blocks = [
                ResBlock(
                    expansion,
                    block_sizes[i] if j == 0 else block_sizes[i + 1],
                    block_sizes[i + 1],
                    stride=(1 if i == 0 else 2) if j == 0 else 1,
                    ks=kernel_size,
                )
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.width = widths[-1] * expansion
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, in_chans, T) -> token map (B, ~T/32, width)."""
        return self.stages(self.stem(x)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=1)


@register_model
def xresnet1d50(**kwargs: object) -> XResNet1d:
    return XResNet1d(4, (3, 4, 6, 3), **kwargs)  # type: ignore[arg-type]


@register_model
def xresnet1d101(**kwargs: object) -> XResNet1d:
    return XResNet1d(4, (3, 4, 23, 3), **kwargs)  # type: ignore[arg-type]


@register_model
def test_xresnet(**kwargs: object) -> XResNet1d:
    """A tiny basic-block XResNet1d for unit tests."""
    kwargs.setdefault("widths", (16, 24, 32, 48))
    kwargs.setdefault("stem", (8, 8, 16))
    return XResNet1d(1, (1, 1, 1, 1), **kwargs)  # type: ignore[arg-type]
