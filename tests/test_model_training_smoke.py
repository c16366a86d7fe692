"""Training objective, sampler, EMA and the regression baseline on small synthetic batches;
the issue-12 options (x0 prediction, prior residual, depth losses, time densities) on the tiny
real dataset."""

import math

import pytest
import torch

from piff.choices import PREDICTIONS
from piff.errors import PiffInputError
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


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_physics_term_on_consistent_data(prediction):
    """With data fluxes and h_prev, the residual of the clean estimate is (x0_hat - x0) in metres
    per hour, so the term (in model units) equals the velocity MSE up to float rounding, whatever
    the network outputs."""
    batch = make_batch(h=16, w=16)
    norm, bridge = _normaliser(batch), Bridge("none", prediction=prediction)
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


def test_l1_physics_term_on_consistent_data_is_the_l1_depth_loss():
    """physics_norm="l1": mean |R| in metres; with the data's fluxes R = h' - h, so the term is
    the L1 depth loss in metres, whatever the network outputs."""
    batch = make_batch(h=16, w=16)
    norm, bridge = _normaliser(batch), Bridge("none", prediction="x0")
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else None
    g = lambda: torch.Generator().manual_seed(3)
    _, logs = training_loss(model, bridge, norm, batch, use_physics=True, physics_flux="data", physics_norm="l1",
                            depth_loss="l1", generator=g())
    assert logs["physics"].item() == pytest.approx(logs["depth_loss"].item(), rel=1e-4)
    _, l2_logs = training_loss(model, bridge, norm, batch, use_physics=True, physics_flux="data", generator=g())
    assert l2_logs["physics"].item() == pytest.approx(logs["mse"].item(), rel=1e-4)  # the default is unchanged
    with pytest.raises(ValueError, match="physics_norm"):
        training_loss(model, bridge, norm, batch, use_physics=True, physics_norm="l3")


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


def test_hour_mean_scaling_bounds_the_flux_change_on_drained_faces():
    """``scaled_hour_mean`` scales by (h_prev + h') / 2 over (h_prev + h) / 2: it still returns the
    data on the true depth, and on a face that drained during the hour (deep at h-1, dry at h)
    a model error moves far less flux than the end-of-hour ratio does."""
    from piff.model.physics import depth_scaled_fluxes

    batch = make_batch(h=16, w=16)
    depth, prev = batch["depth"].clamp_min(0), batch["depth_prev"].clamp_min(0)
    fx, fy = depth_scaled_fluxes(depth, depth, batch["flux_x"], batch["flux_y"], depth_prev_m=prev)
    assert torch.equal(fx, batch["flux_x"]) and torch.equal(fy, batch["flux_y"])
    # one cell, faces on both sides: 0.5 m deep an hour ago, dry now, 2 m^2 through each face
    dry_now, deep_before = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.5)
    flux_x, flux_y = torch.full((1, 1, 1, 2), 2.0), torch.zeros(1, 1, 2, 1)
    wet_model = torch.full((1, 1, 1, 1), 0.05)  # the model leaves 5 cm behind
    end, _ = depth_scaled_fluxes(wet_model, dry_now, flux_x, flux_y)
    mean, _ = depth_scaled_fluxes(wet_model, dry_now, flux_x, flux_y, depth_prev_m=deep_before)
    # end of hour: x (5 + 1) / (0 + 1) = 6; hour mean: (27.5 + 1) / (25 + 1)
    torch.testing.assert_close(end, torch.full_like(end, 12.0))
    torch.testing.assert_close(mean, torch.full_like(mean, 2.0 * 0.285 / 0.26))
    norm, bridge = _normaliser(batch), Bridge("none")
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    loss, logs = training_loss(model, bridge, norm, batch, use_physics=True, physics_flux="scaled_hour_mean")
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_sample_returns_non_negative_metres_with_exactly_nfe_network_calls():
    batch = make_batch(h=16, w=16)
    norm = _normaliser(batch)
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    calls = {"net": 0, "rain": 0}
    model.net.register_forward_hook(lambda *_: calls.__setitem__("net", calls["net"] + 1))
    model.rain_encoder.register_forward_hook(lambda *_: calls.__setitem__("rain", calls["rain"] + 1))
    for bridge in (Bridge("constant"), Bridge("constant", prediction="x0"),
                   Bridge("bridge", prediction="x0", prior_residual=True)):
        args = (model, bridge, norm, batch["elevation"], batch["prior"], batch["rain_window"])
        for nfe, method in ((1, "euler"), (3, "heun"), (4, "heun"), (5, "euler_maruyama"), (10, "euler")):
            calls.update(net=0, rain=0)
            out = sample(*args, nfe=nfe, method=method, generator=torch.Generator().manual_seed(0))
            assert calls == {"net": nfe, "rain": 1}
            assert out.shape == (B, 1, 16, 16) and out.min() >= 0 and torch.isfinite(out).all()
    args = (model, Bridge("constant"), norm, batch["elevation"], batch["prior"], batch["rain_window"])
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


# ----------------------------------------------------------------------------- issue 12 options
# on the real tiny dataset (solver ground truth, SPM prior), through the training Objective
OPTIONS = {"x0": {"prediction": "x0"},
           "x0_prior_residual": {"prediction": "x0", "prior_residual": True},
           "l1": {"depth_loss": "l1"},
           "x0_wet_l1_physics": {"prediction": "x0", "depth_loss": "wet_l1", "use_physics": True},
           "logit_normal": {"time_sampling": "logit_normal"},
           "x0_beta_dem": {"prediction": "x0", "time_sampling": "beta_dem", "noise": "none"},
           "x0_residual_l1_anchored80": {"prediction": "x0", "prior_residual": True, "depth_loss": "l1",
                                         "time_sampling": "anchored", "anchor_share": 0.8},
           "x0_l1_without_the_velocity_mse": {"prediction": "x0", "depth_loss": "l1", "velocity_loss_weight": 0.0},
           "phy_on_the_patch2_network": {"model": "demo_patch2", "prediction": "x0", "prior_residual": True,
                                         "depth_loss": "l1", "use_physics": True, "time_sampling": "anchored"}}


def _train_briefly(options: dict, dataset_path, steps: int, seeds: int = 4):
    """The training Objective of an experiment with ``options`` (demo network), ``steps`` AdamW
    steps on one fixed batch of 8 training maps, t and noise cycling through ``seeds`` seeds
    (so step i and i + seeds see the same draw). Returns (objective, data, optimizer, logs)."""
    from piff.data.torch_dataset import FloodMapDataset
    from piff.training.config import ExperimentConfig
    from piff.training.objective import Objective
    from piff.training.train import collate

    cfg = ExperimentConfig.from_dict({"model": "demo", "lr": 2e-3, "rain_encoder_lr": 2e-3, "ema_decay": 0.5,
                                      **options})
    data = FloodMapDataset(dataset_path, "train", prior=cfg.prior, with_physics=cfg.use_physics)
    torch.manual_seed(0)
    objective = Objective(cfg, data)
    optimizer = objective.optimizer()
    batch = collate(data, list(range(0, len(data), len(data) // 8))[:8], "cpu")
    history = []
    for i in range(steps):
        loss, logs = objective.loss(objective.model, batch, torch.Generator().manual_seed(i % seeds))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.update_ema()
        history.append({"step": i + 1, **{k: float(v) for k, v in logs.items()}})
    return objective, data, optimizer, history


@pytest.mark.parametrize("name", OPTIONS)
def test_each_new_option_trains_and_lowers_the_loss(name, tiny_dataset):
    """20 real optimiser steps of each issue-12 option on real maps: the loss (velocity MSE plus
    the option's terms) at least halves, comparing the same t and noise draws."""
    options = OPTIONS[name]
    objective, _, _, history = _train_briefly(options, tiny_dataset, steps=20)
    bridge = objective.bridge
    assert bridge.prediction == options.get("prediction", "velocity")
    assert bridge.prior_residual == options.get("prior_residual", False)
    assert bridge.time_sampling == options.get("time_sampling", "uniform")
    assert ("depth_loss" in history[0]) == ("depth_loss" in options)
    assert ("physics" in history[0]) == options.get("use_physics", False)
    first = sum(h["loss"] for h in history[:4])
    last = sum(h["loss"] for h in history[-4:])
    assert all(math.isfinite(h["loss"]) for h in history) and last < 0.5 * first, (first, last)


def test_velocity_loss_weight_scales_the_bridge_term_only():
    """The loss is velocity_loss_weight * MSE + the depth (and physics) terms, on the same draws:
    weight 0 leaves the L1 on depth alone, weight 2 doubles the MSE's share."""
    batch = make_batch(h=16, w=16)
    norm, bridge = _normaliser(batch), Bridge(prediction="x0")
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    parts = {}
    for weight in (0.0, 1.0, 2.0):
        loss, logs = training_loss(model, bridge, norm, batch, generator=torch.Generator().manual_seed(3),
                                   depth_loss="l1", velocity_loss_weight=weight)
        parts[weight] = (loss.item(), logs["mse"].item(), logs["depth_loss"].item())
    mse, dl = parts[1.0][1], parts[1.0][2]
    assert mse > 0 and dl > 0 and all(p[1:] == (mse, dl) for p in parts.values())
    assert parts[0.0][0] == pytest.approx(dl) and parts[2.0][0] == pytest.approx(2 * mse + dl)


def test_depth_losses_in_metres():
    """l1 is the mean absolute error in metres; wet_l1 weighs the cells the truth has wet
    (>= WET_M) WET_L1_WEIGHT times."""
    from piff.hydro.metrics import WET_M
    from piff.model.piff_model import WET_L1_WEIGHT, depth_loss_m

    truth = torch.tensor([0.0, 0.0, 0.2, 0.5]).view(1, 1, 2, 2)
    pred = truth + torch.tensor([0.01, -0.03, 0.02, -0.04]).view(1, 1, 2, 2)
    assert depth_loss_m(pred, truth, "l1").item() == pytest.approx(0.025)
    assert 0.2 >= WET_M > 0.0
    want = (0.01 + 0.03 + WET_L1_WEIGHT * (0.02 + 0.04)) / 4
    assert depth_loss_m(pred, truth, "wet_l1").item() == pytest.approx(want)
    batch = make_batch(h=16, w=16)
    model = build_model(ModelConfig.from_preset("tiny", **SMALL))
    with pytest.raises(ValueError, match="depth_loss"):
        training_loss(model, Bridge(), _normaliser(batch), batch, depth_loss="l2")


def _write_model(objective, data, optimizer, history, folder):
    from piff.training.train import lr_lambda, write_outputs

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(objective.cfg))
    folder.mkdir(parents=True, exist_ok=True)
    write_outputs(objective, optimizer, scheduler, objective.cfg, "f" * 24, data, "0" * 64, len(history), history,
                  folder / "model.pt", folder)
    return folder / "model.pt"


def _test_inputs(dataset_path, n=4):
    from piff.data.torch_dataset import FloodMapDataset

    test = FloodMapDataset(dataset_path, "test", with_physics=False)
    batch = torch.utils.data.default_collate([test[i] for i in range(n)])
    return batch["elevation"], batch["prior"], batch["rain_window"]


def test_x0_model_saved_and_loaded_predicts_identically(tiny_dataset, tmp_path):
    """model.pt stores the bridge's options; load_trained predicts with them, bit for bit the
    maps of the in-memory model (EMA weights), and not those of a velocity reading."""
    from piff.model.trained import load_trained

    options = {"prediction": "x0", "prior_residual": True, "time_sampling": "logit_normal", "depth_loss": "wet_l1"}
    objective, data, optimizer, history = _train_briefly(options, tiny_dataset, steps=3)
    loaded = load_trained(_write_model(objective, data, optimizer, history, tmp_path))
    assert loaded.bridge == objective.bridge and loaded.bridge.prediction == "x0"
    assert {k: loaded.experiment[k] for k in options} == options
    elevation, prior, rain = _test_inputs(tiny_dataset)
    for nfe, sampler in ((1, "euler"), (3, "heun"), (4, "euler_maruyama")):
        with objective.ema.swapped_in():
            want = sample(objective.model, objective.bridge, objective.normaliser, elevation, prior, rain, nfe=nfe,
                          method=sampler, generator=torch.Generator().manual_seed(5))
        got = loaded.predict(elevation, prior, rain, nfe=nfe, sampler=sampler,
                             generator=torch.Generator().manual_seed(5))
        assert torch.equal(got, want)
    as_velocity = sample(loaded.model, Bridge(loaded.bridge.noise, loaded.bridge.sigma), loaded.normaliser,
                         elevation, prior, rain, nfe=3)
    assert (as_velocity - got).abs().max() > 1e-3  # the stored options matter


def test_model_file_without_the_new_keys_loads_as_the_velocity_bridge(tiny_dataset, tmp_path):
    """A model.pt written before issue 12 (bridge = noise and sigma only, or no bridge entry at
    all; no new experiment keys) loads as the paper's velocity bridge and predicts as before."""
    from piff.model.store import load_checkpoint, serialize
    from piff.model.trained import load_trained
    from piff.training.config import ADDED_KEYS

    objective, data, optimizer, history = _train_briefly({}, tiny_dataset, steps=2)
    path = _write_model(objective, data, optimizer, history, tmp_path / "new")
    today = load_trained(path)
    payload = load_checkpoint(path)
    meta = payload["piff"]
    old_train_config = {k: v for k, v in meta["train_config"].items() if k not in ADDED_KEYS}
    elevation, prior, rain = _test_inputs(tiny_dataset)
    want = today.predict(elevation, prior, rain, nfe=2)
    for bridge_entry in ({"noise": "constant", "sigma": 0.1}, None):
        old_meta = {**meta, "train_config": old_train_config, "bridge": bridge_entry}
        if bridge_entry is None:
            del old_meta["bridge"]
        old = tmp_path / "old.pt"
        old.write_bytes(serialize({**payload, "piff": old_meta}))
        loaded = load_trained(old)
        assert loaded.bridge == Bridge("constant", 0.1)
        assert loaded.bridge.prediction == "velocity" and not loaded.bridge.prior_residual
        assert torch.equal(loaded.predict(elevation, prior, rain, nfe=2), want)


def test_new_experiment_options_are_checked_and_old_fingerprints_kept():
    from piff.training.config import ExperimentConfig

    # the fingerprints piff gave these experiments before issue 12 (so their runs still resume)
    assert ExperimentConfig.from_dict({}).fingerprint("0" * 64) == "8df637f0dbbb809e6cb1d67c"
    phy = {"use_physics": True, "model": "demo", "steps": 600}
    assert ExperimentConfig.from_dict(phy).fingerprint("0" * 64) == "3f6053d388c66422654b8f7c"
    assert ExperimentConfig.from_dict({**phy, "prediction": "x0"}).fingerprint("0" * 64) != "3f6053d388c66422654b8f7c"
    bad = [({"prediction": "eps"}, "prediction"), ({"time_sampling": "cosine"}, "time_sampling"),
           ({"depth_loss": "l2"}, "depth_loss"), ({"prior_residual": True}, "prior_residual"),
           ({"prediction": "x0", "prior_residual": True, "use_prior": False}, "prior_residual"),
           ({"time_sampling": "anchored", "anchor_share": 1}, "anchor_share"),
           ({"time_sampling": "anchored", "anchor_share": -0.5}, "anchor_share"),
           ({"time_sampling": "uniform", "anchor_share": 0.8}, "anchor_share"),
           ({"velocity_loss_weight": -1.0}, "velocity_loss_weight"),
           ({"velocity_loss_weight": 0.0}, "no loss to train on")]
    for options, word in bad:
        with pytest.raises(PiffInputError, match=word):
            ExperimentConfig.from_dict(options)
    ExperimentConfig.from_dict({"prediction": "x0", "prior_residual": True, "time_sampling": "beta_dem",
                                "depth_loss": "wet_l1", "depth_loss_weight": 0.5})
    weighted = {**phy, "prediction": "x0", "depth_loss": "l1"}  # the default weight keeps the fingerprint
    assert (ExperimentConfig.from_dict({**weighted, "velocity_loss_weight": 1.0}).fingerprint("0" * 64)
            == ExperimentConfig.from_dict(weighted).fingerprint("0" * 64)
            != ExperimentConfig.from_dict({**weighted, "velocity_loss_weight": 0.0}).fingerprint("0" * 64))
    anchored = {**phy, "time_sampling": "anchored"}  # the default share leaves the fingerprint as it was
    assert (ExperimentConfig.from_dict({**anchored, "anchor_share": 0.5}).fingerprint("0" * 64)
            == ExperimentConfig.from_dict(anchored).fingerprint("0" * 64)
            != ExperimentConfig.from_dict({**anchored, "anchor_share": 0.8}).fingerprint("0" * 64))
