"""ViT-1D: non-overlapping patches of the 12-lead signal, learned positions, pre-norm transformer blocks.

Used in the paper's backbone ablation. ``forward_features`` returns the patch tokens (B, T / patch, width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from esi.models.encoders import register_model
from esi.models.layers import Attention, DropPath, Mlp


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


class ViT1d(nn.Module):
    """1D vision transformer.

    Args:
        width: token width.
        depth: transformer blocks.
        heads: attention heads.
        patch_size: samples per patch (50 = 0.1 s at 500 Hz).
        seq_len: the input length the position table is sized for; other lengths interpolate it.
        in_chans: input leads.
        mlp_ratio: MLP hidden width / width.
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        patch_size: int = 50,
        seq_len: int = 5000,
        in_chans: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.width = width
        self.patch_size = patch_size
        self.grad_checkpointing = False
        self.patch_embed = nn.Conv1d(in_chans, width, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, max(1, seq_len // patch_size), width) * 0.02)
        rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList([TransformerBlock(width, heads, mlp_ratio, r) for r in rates])
        self.norm = nn.LayerNorm(width)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _positions(self, n: int) -> torch.Tensor:
        if n == self.pos_embed.shape[1]:
            return self.pos_embed
        # Another input length: stretch the learned table rather than refusing the input.
        return F.interpolate(
            self.pos_embed.transpose(1, 2), size=n, mode="linear", align_corners=False
        ).transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, in_chans, T) -> token map (B, T // patch_size, width)."""
        x = self.patch_embed(x).transpose(1, 2)
        x = x + self._positions(x.shape[1])
        for block in self.blocks:
            x = (
                checkpoint(block, x, use_reentrant=False)
                if self.grad_checkpointing and self.training
                else block(x)
            )
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=1)


@register_model
def vit1d_small(**kwargs: object) -> ViT1d:
    return ViT1d(384, 12, 6, **kwargs)  # type: ignore[arg-type]


@register_model
def vit1d_base(**kwargs: object) -> ViT1d:
    return ViT1d(768, 12, 12, **kwargs)  # type: ignore[arg-type]


@register_model
def test_vit(**kwargs: object) -> ViT1d:
    """A two-block ViT-1D for unit tests."""
    kwargs.setdefault("patch_size", 100)
    return ViT1d(32, 2, 4, **kwargs)  # type: ignore[arg-type]
