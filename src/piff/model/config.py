"""Model configuration: named presets plus overrides, round-tripped through plain dicts so a
checkpoint can rebuild the network it was trained with."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from piff.choices import TRAINED_KINDS as KINDS
from piff.choices import rename_legacy_keys
from piff.errors import PiffInputError


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a ``PIFFModel`` or ``RegressionModel``.

    ``attention_ds`` lists downsampling factors (not pixel sizes) so a preset works at any
    input size: the paper's (8, 16) is attention at 32x32 and 16x16 for a 256x256 DEM.
    Transformer width at an attention site is ``num_heads * head_channels``.
    """

    preset: str = "tiny"
    kind: str = "piff"  # "piff" (the bridge's velocity net) or "regression" (one-shot U-Net)
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    attention_ds: tuple[int, ...] = (4, 8)
    num_heads: int = 4
    head_channels: int = 32
    transformer_depth: int = 1
    ff_mult: int = 4
    dropout: float = 0.0
    norm_groups: int = 32
    use_prior: bool = True
    rain_width: int = 128
    rain_layers: int = 1
    rain_heads: int = 4
    # Side of the square cell blocks the network works on: 2 folds each 2 x 2 block of the input
    # maps into channels (pixel unshuffle) before the first level and unfolds the output the same
    # way (sub-pixel convolution), so no level runs at full resolution; 1: none.
    patch: int = 1
    # patch > 1: channels of a small full-resolution head after the unfolding, which also sees
    # the input maps (two 3 x 3 convolutions); 0: the unfolded output is the output.
    fine_channels: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise PiffInputError("model config", f"kind must be one of {KINDS}, got {self.kind!r}")
        for name, least in (("patch", 1), ("fine_channels", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise PiffInputError("model config", f"{name} must be a whole number >= {least}, got {value!r}")
        if self.fine_channels and self.patch == 1:
            raise PiffInputError("model config", "fine_channels is a head after the unfolding: it needs patch > 1")

    @classmethod
    def from_preset(cls, name: str = "tiny", **overrides) -> ModelConfig:
        if name not in PRESETS:
            raise PiffInputError("model config", f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    @property
    def in_channels(self) -> int:
        """[x_t, DEM, prior] for the bridge, [DEM, prior] for the regression baseline."""
        return (2 if self.kind == "piff" else 1) + int(self.use_prior)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this."""
        return self.patch * 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of ``to_dict``; keys left out take the values of the named preset."""
        d = rename_legacy_keys(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PiffInputError("model config", f"unknown keys {sorted(unknown)}")
        base = PRESETS.get(d.get("preset", "tiny"), cls())
        return replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRESETS = {
    # CPU-sized: ~5.7 M parameters (rain encoder width 128), made for 64x64 maps (attention at
    # 16x16 and 8x8; ~0.1 s forward+backward per sample on one core). At 256x256 the ds-4 site
    # attends over 64x64 = 4096 tokens, which dominates its cost (see docs/benchmarks.md).
    "tiny": ModelConfig(preset="tiny"),
    # The demo config's network: ~1.2 M parameters, attention only at 1/8 resolution (8x8 on a
    # 64x64 map). About 0.3 s per optimiser step of 16 maps at 64x64 on one CPU core, so the
    # demo experiments train in a few minutes on a 2-core laptop.
    "demo": ModelConfig(preset="demo", base_channels=16, norm_groups=16, head_channels=16, attention_ds=(8,),
                        rain_width=64),
    # The demo network with half the channels at full and half resolution and twice at 1/8
    # (8-16-32-64 instead of 16-32-32-64; ~1.05 M parameters): at 256 x 256 on 2 CPU threads one
    # evaluation costs ~75 ms against the demo's ~120 ms (docs/benchmarks.md, "Where a map's time
    # goes"), for `piff predict` where one map must come in well under a second.
    "fast": ModelConfig(preset="fast", base_channels=8, channel_mult=(1, 2, 4, 8), norm_groups=8, head_channels=16,
                        attention_ds=(8,), rain_width=64),
    # The demo network without its full-resolution level: each 2 x 2 block of cells enters as
    # channels (patch 2), and the levels are the demo's 1/2, 1/4 and 1/8 ones (32-32-64
    # channels, attention at 1/8; ~1.2 M parameters). A training step 1.8x cheaper than the
    # demo's, a map at 256 x 256 ~40 % cheaper (docs/benchmarks.md, "The patch-2 network").
    "demo_patch2": ModelConfig(preset="demo_patch2", base_channels=32, channel_mult=(1, 1, 2), norm_groups=16,
                               head_channels=16, attention_ds=(8,), rain_width=64, patch=2),
    # Paper scale: ~172 M parameters (U-Net 171.3 M + rainfall encoder 0.9 M; the paper says
    # ~174 M). Transformer width 512 = the channel width at 32x32 / 16x16; ff_mult 5 brings the
    # total to within ~1 % of the paper's count (ff_mult 4 would give ~163 M).
    "paper": ModelConfig(preset="paper", base_channels=128, channel_mult=(1, 1, 2, 4, 4), num_res_blocks=2,
                         attention_ds=(8, 16), num_heads=8, head_channels=64, ff_mult=5,
                         rain_width=256, rain_layers=1, rain_heads=8),
}
# demo_patch2 with a full-resolution head of 8 channels that sees the input maps (an ablation:
# it did not help, docs/benchmarks.md, "The patch-2 network").
PRESETS["demo_patch2_fine"] = replace(PRESETS["demo_patch2"], preset="demo_patch2_fine", fine_channels=8)
