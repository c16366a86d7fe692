"""Spatial-transformer blocks: self-attention over the map, cross-attention to the rainfall
tokens, feed-forward (the block PIFF puts at every attention resolution).

Self-attention is global over the map it is given. For maps larger than the training maps,
:class:`SpatialTransformer` can instead attend within windows of the training map's token grid
(``window``; set by ``piff.model.networks.ConditionedNet.attention_windows``), so every token
attends to as many neighbours as in training and the cost grows with the area, not its square.
Cross-attention and the feed-forward act on each token alone, so only self-attention changes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of ``x`` (B, N, dim) over ``context`` (B, M, context_dim); self-
    attention when ``context`` is None. Returns (B, N, dim)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: (B, 1, 1, M) bool, True where a key may be attended to (None: all)."""
        ctx = x if context is None else context
        q, k, v = (self._split(f(a)) for f, a in ((self.to_q, x), (self.to_k, ctx), (self.to_v, ctx)))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    def _split(self, a: torch.Tensor) -> torch.Tensor:
        b, n, _ = a.shape
        return a.reshape(b, n, self.heads, -1).transpose(1, 2)  # (B, heads, N, head_dim)


class FeedForward(nn.Module):
    """GEGLU feed-forward (B, N, dim) -> (B, N, dim), hidden width ``mult * dim``."""

    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to ``context``, feed-forward; all residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, head_dim)
        self.cross_attn = Attention(dim, heads, head_dim, context_dim)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), mask=mask)
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """(B, C, H, W) feature map + (B, M, context_dim) tokens -> (B, C, H, W).

    GroupNorm, 1x1 projection to ``heads * head_dim`` channels, ``depth`` transformer blocks
    over the H*W positions, zero-initialised 1x1 projection back, residual: at initialisation
    the block is the identity, so inserting it does not disturb the U-Net.

    ``ds``: the map's downsampling factor at this site (1/ds of the input resolution).
    ``window``: None (self-attention over all H*W positions) or (wh, ww) tokens: a map larger
    than that is cut into windows of wh x ww tokens from its top-left corner, each attending
    only to itself; the token grid is padded at the bottom/right to whole windows and the
    padded tokens are masked out as keys and dropped afterwards. Not a parameter (not saved).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int, depth: int = 1,
                 ff_mult: int = 4, dropout: float = 0.0, norm_groups: int = 32, ds: int = 1):
        super().__init__()
        self.ds = ds
        self.window: tuple[int, int] | None = None
        inner = heads * head_dim
        self.norm = group_norm(channels, norm_groups)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.blocks = nn.ModuleList(TransformerBlock(inner, heads, head_dim, context_dim, ff_mult, dropout)
                                    for _ in range(depth))
        self.proj_out = zero_module(nn.Conv2d(inner, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = self.proj_in(self.norm(x))
        if self.window is not None and (h > self.window[0] or w > self.window[1]):
            return x + self.proj_out(self._windowed(y, context))
        y = y.flatten(2).transpose(1, 2)  # (B, H*W, inner)
        for block in self.blocks:
            y = block(y, context)
        y = y.transpose(1, 2).reshape(b, -1, h, w)
        return x + self.proj_out(y)

    def _windowed(self, y: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The transformer blocks on (B, C, H, W) features within windows of ``self.window`` tokens."""
        b, c, h, w = y.shape
        wh, ww = self.window
        nh, nw = -(-h // wh), -(-w // ww)
        pad = (0, nw * ww - w, 0, nh * wh - h)
        mask = None
        if any(pad):
            y = F.pad(y, pad)
            valid = F.pad(torch.ones(1, 1, h, w, dtype=torch.bool, device=y.device), pad)
            mask = _to_windows(valid, wh, ww)[:, None, None, :, 0].repeat(b, 1, 1, 1)  # (B*n, 1, 1, wh*ww)
        tokens = _to_windows(y, wh, ww)  # (B * nh * nw, wh * ww, C)
        ctx = context.repeat_interleave(nh * nw, dim=0)
        for block in self.blocks:
            tokens = block(tokens, ctx, mask)
        y = tokens.reshape(b, nh, nw, wh, ww, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, nh * wh, nw * ww)
        return y[:, :, :h, :w]


def _to_windows(y: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, C, nh*wh, nw*ww) -> (B*nh*nw, wh*ww, C): the windows in row-major order, each window's
    tokens in row-major order."""
    b, c, h, w = y.shape
    y = y.reshape(b, c, h // wh, wh, w // ww, ww).permute(0, 2, 4, 3, 5, 1)
    return y.reshape(b * (h // wh) * (w // ww), wh * ww, c)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (ADM: residual branches start as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count dividing ``channels`` that is <= ``groups``
    (skip concatenations such as 16 + 32 = 48 channels are not multiples of 32)."""
    return nn.GroupNorm(math.gcd(channels, groups), channels, eps=1e-6)
