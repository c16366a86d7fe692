"""Rainfall encoder: the 24 hourly intensities ending at the target hour -> cross-attention tokens.

Intensities are continuous (no vocabulary: the reference code's 100-word token ids crashed on
any hour >= 100 mm/h). Each hour becomes one token: log1p(mm/h) through a small MLP (log1p
compresses 0..500+ mm/h to 0..6.2, so extreme hours stay in the range the MLP was trained on
instead of saturating it), plus a learned position embedding, then a pre-norm transformer.
"""

from __future__ import annotations

import torch
from torch import nn

from piff.hydro.storms import WINDOW_HOURS


class RainfallEncoder(nn.Module):
    """(B, window) mm/h -> (B, window, width) tokens."""

    def __init__(self, width: int = 256, layers: int = 1, heads: int = 4, window: int = WINDOW_HOURS,
                 ff_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.window = window
        self.value_embed = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        self.position = nn.Parameter(torch.randn(1, window, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, ff_mult * width, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, rain_mm_per_h: torch.Tensor) -> torch.Tensor:
        if rain_mm_per_h.dim() != 2 or rain_mm_per_h.shape[1] != self.window:
            raise ValueError(f"rain window must have shape (B, {self.window}), got {tuple(rain_mm_per_h.shape)}")
        # Intensities are >= 0 by construction (the data loader validates them); the clamp only
        # keeps a stray -0.0 or rounding negative away from log1p's pole at -1.
        x = torch.log1p(rain_mm_per_h.clamp_min(0)).unsqueeze(-1)
        tokens = self.value_embed(x) + self.position
        return self.norm(self.transformer(tokens))
