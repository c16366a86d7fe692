"""U-Net, rainfall encoder and model config: shapes, parameter counts, conditioning."""

import json

import pytest
import torch

from piff.errors import PiffInputError
from piff.model import ModelConfig, PIFFModel, RainfallEncoder, build_model, count_parameters
from piff.model.unet import timestep_embedding

PAPER_PARAMS = 174e6




def _inputs(b, h, w, rain_mm_per_h=10.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(b, 1, h, w, generator=g) for _ in range(3)]
    return maps, torch.rand(b, generator=g), torch.full((b, 24), rain_mm_per_h)


def _wake_zero_init(model, seed=0):
    """Give the zero-initialised output layers (ADM's identity-at-init trick) small random
    weights so that every input, rain included, reaches the output of a fresh model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def test_tiny_forward_shapes():
    model = build_model(ModelConfig.from_preset("tiny"))
    assert 2e6 < count_parameters(model) < 8e6
    (x, z, s), t, rain = _inputs(2, 64, 64)
    assert model(x, t, z, s, rain).shape == (2, 1, 64, 64)
    (x, z, s), t, rain = _inputs(1, 32, 48)  # non-square, multiples of 8
    assert model(x, t, z, s, rain).shape == (1, 1, 32, 48)


def test_paper_preset_on_meta_device():
    with torch.device("meta"):
        model = build_model(ModelConfig.from_preset("paper"))
        (x, z, s), t, rain = _inputs(1, 256, 256)
        out = model(x, t, z, s, rain)
    assert out.shape == (1, 1, 256, 256)
    assert abs(count_parameters(model) - PAPER_PARAMS) < 0.1 * PAPER_PARAMS
    assert model.config.in_channels == 3 and model.net.size_multiple == 16


def test_size_not_divisible_is_a_clear_error():
    model = build_model(ModelConfig.from_preset("tiny"))
    (x, z, s), t, rain = _inputs(1, 60, 64)
    with pytest.raises(PiffInputError, match="60x64 is not divisible by 8"):
        model(x, t, z, s, rain)


@pytest.mark.parametrize("preset", ["demo_patch2", "demo_patch2_fine"])
def test_the_patch2_network_has_no_full_resolution_level_but_a_full_resolution_output(preset):
    """demo_patch2 folds each 2 x 2 block of cells into channels before its first level and
    unfolds its output the same way: the map comes back at full size, its size multiple doubles
    (3 levels, patch 2: 8), and the four cells of one block get their own values, not a copy."""
    from piff.model.attention import SpatialTransformer

    model = build_model(ModelConfig.from_preset(preset)).eval()
    _wake_zero_init(model)
    assert model.net.conv_in.in_channels == 3 * 4 and model.net.size_multiple == model.config.size_multiple == 8
    assert {m.ds for m in model.modules() if isinstance(m, SpatialTransformer)} == {8}  # attention at 1/8
    levels = []
    model.net.down[0].register_forward_hook(lambda mod, inp, out: levels.append(out.shape[-2:]))
    (x, z, s), t, rain = _inputs(1, 32, 48)
    with torch.no_grad():
        out = model(x, t, z, s, rain)
    assert out.shape == (1, 1, 32, 48) and levels == [(16, 24)]  # the first level at half resolution
    blocks = [out[..., i::2, j::2] for i in (0, 1) for j in (0, 1)]
    assert all((b - blocks[0]).abs().max() > 1e-4 for b in blocks[1:])
    (x, z, s), t, rain = _inputs(1, 36, 48)
    with pytest.raises(PiffInputError, match="36x48 is not divisible by 8"):
        model(x, t, z, s, rain)


def test_the_fine_head_sees_each_cells_own_inputs():
    """demo_patch2_fine: with the unfolded features silenced, the output at a cell still responds
    to the DEM at that cell and its neighbours within two cells (two 3 x 3 convolutions at full
    resolution), and to nothing farther."""
    model = build_model(ModelConfig.from_preset("demo_patch2_fine")).eval()
    _wake_zero_init(model)
    assert model.net.fine[0].in_channels == 8 + 3
    with torch.no_grad():
        model.net.out[-1].weight.zero_()
        model.net.out[-1].bias.zero_()
    (x, z, s), t, rain = _inputs(1, 16, 16)
    z = z.clone().requires_grad_(True)
    model(x, t, z, s, rain)[0, 0, 5, 6].backward()
    g = z.grad[0, 0].abs()
    near = torch.zeros_like(g, dtype=torch.bool)
    near[3:8, 4:9] = True
    assert g[5, 6] > 0 and (g[~near] == 0).all()


def test_patch_is_checked_and_model_files_without_it_keep_patch_1():
    with pytest.raises(PiffInputError, match="patch must be a whole number >= 1"):
        ModelConfig.from_preset("demo", patch=0)
    with pytest.raises(PiffInputError, match="needs patch > 1"):
        ModelConfig.from_preset("demo", fine_channels=8)
    stored = {k: v for k, v in ModelConfig.from_preset("demo").to_dict().items() if k not in ("patch", "fine_channels")}
    assert ModelConfig.from_dict(stored) == ModelConfig.from_preset("demo") and ModelConfig.from_dict(stored).patch == 1


def test_without_prior():
    model = build_model(ModelConfig.from_preset("tiny", use_prior=False))
    assert model.net.conv_in.in_channels == 2
    (x, z, s), t, rain = _inputs(1, 16, 16)
    assert model(x, t, z, None, rain).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="use_prior=False"):
        model(x, t, z, s, rain)
    with pytest.raises(ValueError, match="needs a prior map"):
        build_model(ModelConfig.from_preset("tiny"))(x, t, z, None, rain)


def test_time_embedding_moves_over_the_unit_interval():
    """The reference fed raw t in [0, 1] to an embedding built for 0..1000, freezing most
    frequencies; here nearly every feature changes between t = 0 and t = 0.5."""
    emb = timestep_embedding(torch.tensor([0.0, 0.5, 1.0]), 128)
    changed = (emb[1] - emb[0]).abs() > 1e-2
    assert changed.float().mean() > 0.9
    assert (emb[2] - emb[1]).abs().max() > 0.5


@pytest.mark.parametrize("mm_per_h", [150.0, 500.0])
def test_extreme_rain_encodes_and_changes_the_output(mm_per_h):
    encoder = RainfallEncoder(width=64, heads=4)
    rain = torch.zeros(2, 24)
    rain[:, -3:] = mm_per_h
    tokens = encoder(rain)
    assert tokens.shape == (2, 24, 64) and torch.isfinite(tokens).all()

    model = build_model(ModelConfig.from_preset("tiny", base_channels=16, rain_width=32, head_channels=8))
    _wake_zero_init(model)
    (x, z, s), t, _ = _inputs(2, 16, 16)
    with torch.no_grad():
        wet, dry = model(x, t, z, s, rain), model(x, t, z, s, torch.zeros(2, 24))
    assert torch.isfinite(wet).all()
    assert (wet - dry).abs().max() > 1e-4


def test_rain_window_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(B, 24\)"):
        RainfallEncoder(width=32)(torch.zeros(2, 23))


def test_config_round_trip_rebuilds_the_same_model():
    cfg = ModelConfig.from_preset("tiny", base_channels=16, channel_mult=(1, 2), attention_ds=(2,), dropout=0.1)
    d = json.loads(json.dumps(cfg.to_dict()))  # checkpoint-safe
    again = ModelConfig.from_dict(d)
    assert again == cfg
    a, b = build_model(cfg), build_model(again)
    b.load_state_dict(a.state_dict())
    assert isinstance(b, PIFFModel)
    assert ModelConfig.from_dict({"preset": "paper"}) == ModelConfig.from_preset("paper")
    with pytest.raises(PiffInputError):
        ModelConfig.from_dict({**d, "width": 3})
    with pytest.raises(PiffInputError):
        ModelConfig.from_preset("huge")


def test_eval_mode_disables_dropout_inside_and_restores_the_mode():
    """Inside eval_mode every submodule is in eval mode (dropout off, so two calls agree); a
    training module is back in training mode afterwards, an eval module stays in eval mode."""
    from piff.model.networks import eval_mode

    model = build_model(ModelConfig.from_preset("tiny", dropout=0.5))
    _wake_zero_init(model)
    x, t = torch.randn(1, 3, 32, 32), torch.rand(1)
    with torch.no_grad():
        ctx = model.encode_rain(torch.rand(1, 24))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model.net(x, t, ctx), model.net(x, t, ctx))  # dropout is on
    with torch.no_grad(), eval_mode(model):
        assert not any(m.training for m in model.modules())
        assert torch.equal(model.net(x, t, ctx), model.net(x, t, ctx))
    assert all(m.training for m in model.modules())
    model.eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert not any(m.training for m in model.modules())


# ------------------------------------------------------------------ windowed self-attention
def _transformer(seed=0):
    from piff.model.attention import SpatialTransformer

    torch.manual_seed(seed)
    block = SpatialTransformer(16, heads=2, head_dim=8, context_dim=12, norm_groups=8)
    _wake_zero_init(block, seed)
    return block.eval()


def _window_reference(block, x, context, wh, ww):
    """What windowed attention must be: the transformer blocks run on each window's tokens alone
    (windows from the top-left corner, the last ones cut short by the map's edge)."""
    y = block.proj_in(block.norm(x))
    out = torch.zeros_like(y)
    for i in range(0, y.shape[2], wh):
        for j in range(0, y.shape[3], ww):
            part = y[:, :, i:i + wh, j:j + ww]
            tokens = part.flatten(2).transpose(1, 2)
            for layer in block.blocks:
                tokens = layer(tokens, context)
            out[:, :, i:i + wh, j:j + ww] = tokens.transpose(1, 2).reshape(part.shape)
    return x + block.proj_out(out)


@pytest.mark.parametrize("shape", [(16, 24), (10, 13)])  # whole windows; windows cut by the edge (masked padding)
def test_windowed_self_attention_is_attention_within_each_window(shape):
    block = _transformer()
    g = torch.Generator().manual_seed(1)
    x, context = torch.randn(2, 16, *shape, generator=g), torch.randn(2, 5, 12, generator=g)
    with torch.no_grad():
        full = block(x, context)
        block.window = (8, 8)
        windowed = block(x, context)
        expected = _window_reference(block, x, context, 8, 8)
    torch.testing.assert_close(windowed, expected, rtol=1e-5, atol=1e-5)
    assert (windowed - full).abs().max() > 1e-3  # the windows change the result: the test can see them


def test_a_map_no_larger_than_the_window_keeps_global_attention():
    block = _transformer()
    g = torch.Generator().manual_seed(2)
    x, context = torch.randn(1, 16, 8, 6, generator=g), torch.randn(1, 5, 12, generator=g)
    with torch.no_grad():
        full = block(x, context)
        block.window = (8, 8)
        torch.testing.assert_close(block(x, context), full, rtol=0, atol=0)


def test_attention_windows_scale_with_each_site_and_are_restored():
    """The window is given in map cells; each site gets cells // its downsampling, the
    training-size map is unchanged by it, a larger map is not, and the block restores global
    attention on exit."""
    from piff.model.attention import SpatialTransformer

    model = build_model(ModelConfig.from_preset("tiny")).eval()  # attention at 1/4 and 1/8
    _wake_zero_init(model)
    sites = [m for m in model.modules() if isinstance(m, SpatialTransformer)]
    assert {m.ds for m in sites} == {4, 8}
    (small, _, _), t, rain = _inputs(1, 32, 32)
    (large, z, s), _, _ = _inputs(1, 64, 96)

    def run(x):  # x_t; the DEM and prior maps cropped to its size
        return model(x, t, z[..., :x.shape[-2], :x.shape[-1]], s[..., :x.shape[-2], :x.shape[-1]], rain)
    with torch.no_grad():
        global_small, global_large = run(small), run(large)
        with model.attention_windows((32, 32)):
            assert {(m.ds, m.window) for m in sites} == {(4, (8, 8)), (8, (4, 4))}
            torch.testing.assert_close(run(small), global_small, rtol=0, atol=0)
            assert (run(large) - global_large).abs().max() > 1e-4
        assert all(m.window is None for m in sites)
        torch.testing.assert_close(run(large), global_large, rtol=0, atol=0)


def test_the_output_layer_stays_float32_under_bf16_autocast():
    """Under bfloat16 autocast (piff predict's precision auto/bf16) the network's inner layers run
    in bf16 but the output layer in float32: the result is a float32 map close to the float32
    network's, not one rounded to bf16's 3 significant digits."""
    model = build_model(ModelConfig.from_preset("tiny")).eval()
    _wake_zero_init(model)
    (x, z, s), t, rain = _inputs(1, 32, 32)
    with torch.no_grad():
        full = model(x, t, z, s, rain)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x, t, z, s, rain)
    assert full.dtype == half.dtype == torch.float32
    assert (half - full).abs().max() < 0.05 * full.abs().max()
    rounded = half.to(torch.bfloat16).float()
    assert (rounded != half).any()  # values bf16 cannot hold: the last layer ran in float32
