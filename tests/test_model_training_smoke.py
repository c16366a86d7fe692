"""Training objective, sampler, EMA and the regression baseline on small synthetic batches."""

import pytest
import torch

from piff.model import (
    EMA,
    Bridge,
    ModelConfig,
    Normaliser,
    build_model,
    regress,
    regression_loss,
    sample,
    training_loss,
)

H = W = 64
B = 2
SMALL = dict(base_channels=16, channel_mult=(1, 2), attention_ds=(2,), head_channels=8, rain_width=32)




def make_batch(b=B, h=H, w=W, dx=20.0, seed=0) -> dict:
    """A batch in the data loader's layout whose hour satisfies the continuity identity
    (depth = depth_prev + net inflow / dx + rain - loss) over a two-valley terrain."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    elevation = torch.stack([10 + 3 * (torch.sin(6 * y) + torch.cos(4 * x)), 12 + 2 * torch.cos(5 * x * y)])[:b, None]
    depth_prev = torch.relu(11.0 - elevation) * 0.4
    flux_x = 0.05 * torch.randn(b, 1, h, w + 1, generator=g)
    flux_y = 0.05 * torch.randn(b, 1, h + 1, w, generator=g)
    rain = torch.tensor([40.0, 150.0])[:b]
    inflow = (flux_x[..., :-1] - flux_x[..., 1:] + flux_y[..., :-1, :] - flux_y[..., 1:, :]) / dx
    depth = depth_prev + inflow + rain.view(-1, 1, 1, 1) / 1000
    window = torch.rand(b, 24, generator=g) * 30
    window[:, -1] = rain
    return dict(depth=depth, depth_prev=depth_prev, elevation=elevation, prior=0.8 * depth, rain_window=window,
                flux_x=flux_x, flux_y=flux_y, loss=torch.zeros_like(depth), rain_mm_per_h=rain,
                dx=torch.full((b,), dx), hour=torch.full((b,), 5))


def _normaliser(batch):
    return Normaliser.fit(batch["depth"], batch["elevation"])


def test_tiny_preset_overfits_one_batch():
    """Fixed batch, fixed t and noise: the tiny preset must drive the velocity MSE down 100x."""
    torch.manual_seed(0)
    batch = make_batch()
    norm, bridge = _normaliser(batch), Bridge("constant")
    model = build_model(ModelConfig.from_preset("tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(200):
        loss, _ = training_loss(model, bridge, norm, batch, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 100:
            break
    assert min(losses) < losses[0] / 100, f"loss went {losses[0]:.3g} -> {min(losses):.3g} in {len(losses)} steps"


def test_gradients_reach_the_rainfall_encoder():
    """Zero-initialised output layers block the gradient at step 0 (ADM's identity init); after
    a few steps the rain tokens must be learning through cross-attention."""
    torch.manual_seed(0)
    batch = make_batch(h=16, w=16)
    norm, bridge = _normaliser(batch), Bridge("bridge")
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(4):
        loss, _ = training_loss(model, bridge, norm, batch, use_physics=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    grads = [p.grad.abs().sum() for p in model.rain_encoder.parameters()]
    assert all(torch.isfinite(g) for g in grads) and sum(grads) > 0
    assert model.rain_encoder.value_embed[0].weight.grad.abs().sum() > 0


def test_physics_term_on_consistent_data():
    """With data fluxes and h_prev, the residual of the clean estimate is (x0_hat - x0) in metres
    per hour, so the term (in model units) equals the velocity MSE up to float rounding."""
    batch = make_batch(h=16, w=16)
    norm, bridge = _normaliser(batch), Bridge("none")
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    for p in model.parameters():  # a model whose output is far from the target
        torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else None
    g = lambda: torch.Generator().manual_seed(3)
    loss, logs = training_loss(model, bridge, norm, batch, use_physics=True, physics_weight=0.1, generator=g(),
                               physics_flux="data")
    assert set(logs) == {"mse", "physics", "loss"}
    assert logs["physics"].item() == pytest.approx(logs["mse"].item(), rel=1e-4)
    assert loss.item() == pytest.approx(1.1 * logs["mse"].item(), rel=1e-4)
    plain, plain_logs = training_loss(model, bridge, norm, batch, use_physics=False, generator=g())
    assert "physics" not in plain_logs and plain.item() == pytest.approx(logs["mse"].item())
    with pytest.raises(KeyError, match="flux_x"):
        training_loss(model, bridge, norm, {k: v for k, v in batch.items() if k != "flux_x"}, use_physics=True)


def test_depth_scaled_fluxes_vanish_on_data_and_couple_neighbours():
    """The default physics term rescales the data's fluxes to the model's face depths: it is
    zero on the true depth, and unlike the "data" mode it is not the cell-wise error alone."""
    from piff.model.physics import depth_scaled_fluxes, hourly_imbalance

    batch = make_batch(h=16, w=16)
    batch["depth"] = batch["depth"].clamp_min(0)  # real depths are never negative
    fx, fy = depth_scaled_fluxes(batch["depth"], batch["depth"], batch["flux_x"], batch["flux_y"])
    assert torch.equal(fx, batch["flux_x"]) and torch.equal(fy, batch["flux_y"])
    wrong = batch["depth"] + 0.05 * torch.rand_like(batch["depth"])
    args = (batch["depth_prev"], batch["flux_x"], batch["flux_y"], batch["rain_mm_per_h"], batch["dx"], batch["loss"])
    plain = hourly_imbalance(wrong, *args)
    fx, fy = depth_scaled_fluxes(wrong, batch["depth"], batch["flux_x"], batch["flux_y"])
    scaled = hourly_imbalance(wrong, batch["depth_prev"], fx, fy, *args[3:])
    truth_imbalance = hourly_imbalance(batch["depth"], *args)
    torch.testing.assert_close(plain - truth_imbalance, wrong - batch["depth"], atol=1e-5, rtol=0)  # data mode
    assert (scaled - plain).abs().max() > 1e-4  # scaled mode: the faces move water too
    norm, bridge = _normaliser(batch), Bridge("none")
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    loss, logs = training_loss(model, bridge, norm, batch, use_physics=True, physics_flux="scaled")
    assert torch.isfinite(loss) and logs["physics"].item() != pytest.approx(logs["mse"].item(), rel=1e-3)


def test_sample_returns_non_negative_metres_with_exactly_nfe_network_calls():
    batch = make_batch(h=16, w=16)
    norm = _normaliser(batch)
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    calls = {"net": 0, "rain": 0}
    model.net.register_forward_hook(lambda *_: calls.__setitem__("net", calls["net"] + 1))
    model.rain_encoder.register_forward_hook(lambda *_: calls.__setitem__("rain", calls["rain"] + 1))
    args = (model, Bridge("constant"), norm, batch["elevation"], batch["prior"], batch["rain_window"])
    for nfe, method in ((1, "euler"), (3, "heun"), (4, "heun"), (5, "euler_maruyama")):
        calls.update(net=0, rain=0)
        out = sample(*args, nfe=nfe, method=method, generator=torch.Generator().manual_seed(0))
        assert calls == {"net": nfe, "rain": 1}
        assert out.shape == (B, 1, 16, 16) and out.min() >= 0 and torch.isfinite(out).all()
    a = sample(*args, nfe=4, method="euler_maruyama", generator=torch.Generator().manual_seed(1))
    b = sample(*args, nfe=4, method="euler_maruyama", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert model.training  # the sampler restores the training mode


def test_ema_update_formula_and_swap():
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    ema = EMA(model, decay=0.9)
    assert any(n.startswith("rain_encoder.") for n in ema.shadow) and any(n.startswith("net.") for n in ema.shadow)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update()
    for n, p in model.named_parameters():
        torch.testing.assert_close(ema.shadow[n], 0.9 * before[n] + 0.1 * p.detach())
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ema.swapped_in():
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.detach(), ema.shadow[n])
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), trained[n])
    other = EMA(build_model(ModelConfig.from_preset("tiny", **SMALL)))
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 1
    torch.testing.assert_close(other.shadow, ema.shadow)


def test_regression_baseline_trains():
    torch.manual_seed(0)
    batch = make_batch(h=16, w=16)
    norm = _normaliser(batch)
    model = build_model(ModelConfig.from_preset("tiny", kind="regression", **SMALL))
    assert model.net.conv_in.in_channels == 2  # [DEM, SPM]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss, logs = regression_loss(model, norm, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["l1"].item())
    assert losses[-1] < 0.5 * losses[0]
    out = regress(model, norm, batch["elevation"], batch["prior"], batch["rain_window"])
    assert out.shape == (B, 1, 16, 16) and out.min() >= 0
