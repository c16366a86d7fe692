"""ADM / guided-diffusion style U-Net with FiLM time conditioning and rainfall cross-attention.

Levels: one per entry of ``channel_mult``; level ``l`` runs at 1 / (patch * 2**l) of the input
size with ``base * channel_mult[l]`` channels. ``patch`` > 1 folds each patch x patch block of
cells into channels before the first level (pixel unshuffle) and unfolds the output the same way
(sub-pixel convolution, Shi et al. 2016, "Real-time single image and video super-resolution"),
optionally followed by a small full-resolution head that also sees the input (``fine_channels``).
Encoder: ``num_res_blocks`` residual blocks per level, then a stride-2 conv (except the last
level). Middle: res, transformer, res. Decoder: ``num_res_blocks + 1`` residual blocks per level
on the concatenated skips, nearest-neighbour upsampling + conv. A spatial transformer
(self-attn, cross-attn to the rain tokens, FF) follows every residual block at a downsampling
factor listed in ``attention_ds``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from piff.errors import PiffInputError
from piff.model.attention import SpatialTransformer, group_norm, zero_module

# The sinusoidal embedding is ADM's, built for t in 0..1000 with periods up to 10^4; our bridge
# time is in [0, 1], so it is stretched by TIME_SCALE first (feeding the raw t, as the
# reference code did, leaves most frequencies frozen near their t = 0 value).
TIME_SCALE = 1000.0
MAX_PERIOD = 10_000.0


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) times in [0, 1] -> (B, dim) sinusoidal features of TIME_SCALE * t."""
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (TIME_SCALE * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM scale-shift from the time embedding, GroupNorm-SiLU-dropout-conv
    (zero-initialised), residual (1x1 conv on the skip when the width changes)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(in_ch, groups), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch))
        self.out_norm = group_norm(out_ch, groups)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                        zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[..., None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.Module):
    """A residual block optionally followed by a spatial transformer (or a resampler)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, emb, context):
        for layer in self.layers:
            x = layer(x, context) if isinstance(layer, SpatialTransformer) else layer(x, emb)
        return x


class UNet(nn.Module):
    """(B, in_channels, H, W) map, (B,) time in [0, 1], (B, M, context_dim) tokens -> (B, out_channels, H, W).

    H and W must be divisible by 2 ** (len(channel_mult) - 1).
    """

    def __init__(self, in_channels: int, out_channels: int = 1, base_channels: int = 128,
                 channel_mult=(1, 1, 2, 4, 4), num_res_blocks: int = 2, attention_ds=(8, 16),
                 num_heads: int = 8, head_channels: int = 64, transformer_depth: int = 1, ff_mult: int = 4,
                 context_dim: int = 256, dropout: float = 0.0, norm_groups: int = 32, patch: int = 1,
                 fine_channels: int = 0):
        super().__init__()
        self.levels = len(channel_mult)
        self.patch = patch
        emb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_embed = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(cin, cout):
            return ResBlock(cin, cout, emb_dim, dropout, norm_groups)

        def attn(ch):
            return SpatialTransformer(ch, num_heads, head_channels, context_dim, transformer_depth, ff_mult, dropout,
                                      norm_groups, ds=ds)  # ds: the resolution where it is called

        self.conv_in = nn.Conv2d(in_channels * patch**2, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels, ch, ds = [base_channels], base_channels, patch
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, base_channels * mult)]
                ch = base_channels * mult
                layers += [attn(ch)] if ds in attention_ds else []
                self.down.append(Stage(*layers))
                skip_channels.append(ch)
            if level < self.levels - 1:
                self.down.append(Stage(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        self.middle = Stage(res(ch, ch), attn(ch), res(ch, ch))
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), base_channels * mult)]
                ch = base_channels * mult
                layers += [attn(ch)] if ds in attention_ds else []
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.up.append(Stage(*layers))
        if patch > 1 and fine_channels > 0:
            # unfold to fine_channels features per cell, then two full-resolution convolutions
            # that also see the input maps: a direct path from each cell's inputs to its output
            self.out = nn.Sequential(group_norm(ch, norm_groups), nn.SiLU(),
                                     nn.Conv2d(ch, fine_channels * patch**2, 3, padding=1))
            self.fine = nn.Sequential(nn.Conv2d(fine_channels + in_channels, fine_channels, 3, padding=1), nn.SiLU(),
                                      zero_module(nn.Conv2d(fine_channels, out_channels, 3, padding=1)))
        else:
            self.out = nn.Sequential(group_norm(ch, norm_groups), nn.SiLU(),
                                     zero_module(nn.Conv2d(ch, out_channels * patch**2, 3, padding=1)))
            self.fine = None

    @property
    def size_multiple(self) -> int:
        return self.patch * 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        emb = self.time_embed(timestep_embedding(t, self.base_channels).to(x.dtype))
        h = self.conv_in(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        skips = [h]
        for stage in self.down:
            h = stage(h, emb, context)
            skips.append(h)
        h = self.middle(h, emb, context)
        for stage in self.up:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context)
        if h.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(h.device.type):
            # the output layers in float32 even under autocast: their result is the depth (or
            # velocity) itself, which bf16 would round to 3 significant digits
            with torch.autocast(h.device.type, enabled=False):
                return self._output(h.float(), x.float())
        return self._output(h, x)

    def _output(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The last features (at 1 / patch of the map) -> the full-resolution output."""
        h = self.out(h)
        if self.patch > 1:
            h = F.pixel_shuffle(h, self.patch)
        return h if self.fine is None else self.fine(torch.cat([h, x], dim=1))

    def _check_size(self, x: torch.Tensor) -> None:
        m = self.size_multiple
        h, w = x.shape[-2:]
        if h % m or w % m:
            raise PiffInputError("model input", f"map size {h}x{w} is not divisible by {m} (2^(levels-1) for "
                                 f"{self.levels} U-Net levels); pad or crop the DEM to a multiple of {m}")
