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
