"""Layers shared by the ECG encoders and the CoCa head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm for channels-first tensors ``(B, C, T)``: statistics over the C channels at each time step.

    The authors' public code normalised a ``(B, C, T)`` tensor over its LAST axis, i.e. over time; this one
    moves channels last, normalises over them, and moves them back.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.transpose(1, 2)


class GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation for channels-last sequences ``(B, T, C)``.

    Each channel's L2 norm over time is divided by the mean norm over channels, which makes channels compete;
    gamma and beta start at zero so a new block begins as the identity plus its residual.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)  # (B, 1, C)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        return self.gamma * (x * nx) + self.beta + x


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch of a whole sample with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head attention on ``(B, L, D)``; optional separate context (cross-attention) and causal mask."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        b, n, d = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class AttentionalPooler(nn.Module):
    """CoCa attentional pooling: ``n_queries`` learned queries cross-attend to a token map, then LayerNorm.

    Args:
        dim: width of the queries and of the output.
        context_dim: width of the token map being pooled.
        n_queries: number of learned queries (1 for the contrastive embedding, 64-256 for the decoder).
        heads: attention heads.
    """

    def __init__(self, dim: int, context_dim: int, n_queries: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.ln_context = nn.LayerNorm(context_dim)
        self.ln_query = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, context_dim=context_dim)
        self.ln_out = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B, T', context_dim) -> (B, n_queries, dim)."""
        q = self.ln_query(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.ln_out(self.attn(q, self.ln_context(tokens)))


def length_groups(lengths: torch.Tensor, min_saving: float = 0.15) -> list[tuple[torch.Tensor, int]]:
    """Split a padded batch into two groups of rows by length when that saves ``min_saving`` of the tokens.

    ``lengths`` (B,) real tokens per row. Returns ``[(rows, width), ...]``: row indices of each group and its
    longest length; one group (all rows, the batch's longest) when splitting does not pay. Per-row
    independent work (a text encoder, the caption decoder) then runs on each group trimmed to its own width
    instead of on padding up to the batch's longest caption. The best single split point of the rows sorted
    by length is chosen (tokens = k * l_0 + (B - k) * l_k).
    """
    lens = [int(x) for x in lengths.tolist()]
    order = sorted(range(len(lens)), key=lambda i: -lens[i])
    widths = [lens[i] for i in order]
    full = len(lens) * (widths[0] if widths else 0)
    best_k, best = 0, full
    for k in range(1, len(widths)):
        cost = k * widths[0] + (len(widths) - k) * widths[k]
        if cost < best:
            best_k, best = k, cost
    if not best_k or best > (1 - min_saving) * full:
        return [(torch.arange(len(lens), device=lengths.device), widths[0] if widths else 0)]
    rows = torch.tensor(order, device=lengths.device)
    return [(rows[:best_k], widths[0]), (rows[best_k:], widths[best_k])]
