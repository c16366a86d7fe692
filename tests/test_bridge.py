"""Bridge math: the path of each noise mode, the clean estimate, NFE accounting of the samplers."""

import math

import pytest
import torch

from piff.choices import DEFAULT_ANCHOR_SHARE
from piff.model.bridge import NOISE_MODES, SAMPLERS, Bridge


def _pair(seed=0, shape=(3, 1, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("noise, std", [("none", lambda t: 0.0 * t), ("constant", lambda t: 0.1 + 0.0 * t),
                                        ("bridge", lambda t: 0.1 * torch.sqrt(t * (1 - t)))])
def test_path_matches_formula(noise, std):
    x0, x1, eps = _pair()
    t = torch.tensor([0.0, 0.3, 0.9])
    got = Bridge(noise, sigma=0.1).interpolate(x0, x1, t, eps)
    tb = t.view(-1, 1, 1, 1)
    want = (1 - tb) * x0 + tb * x1 + std(t).view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(got, want)


def test_bridge_noise_vanishes_at_both_ends_and_peaks_mid_way():
    b = Bridge("bridge", sigma=0.2)
    s = b.noise_std(torch.tensor([0.0, 0.5, 1.0]))
    assert s[0] == 0 and s[2] == 0 and s[1] == pytest.approx(0.1)


def test_time_is_uniform_in_unit_interval_and_reproducible():
    t = Bridge().sample_time(10_000, generator=torch.Generator().manual_seed(1))
    assert 0 <= t.min() and t.max() < 1 and abs(t.mean().item() - 0.5) < 0.02
    torch.testing.assert_close(t, Bridge().sample_time(10_000, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("density, mean, std, above_half", [
    ("uniform", 0.5, 1 / math.sqrt(12), 0.5),
    # logit-normal(0, 1): symmetric about 1/2, std 0.2083 (numerical integral)
    ("logit_normal", 0.5, 0.2083, 0.5),
    # 1 - s + s b, b ~ Beta(1.5, 1): mean 1 - s + 0.6 s, P(t > 1/2) = 1 - ((1/2 - 1 + s) / s)^1.5
    ("beta_dem", 1 - 0.999 + 0.6 * 0.999, 0.999 * math.sqrt(1.5 / (2.5**2 * 3.5)), 1 - (0.499 / 0.999) ** 1.5)])
def test_time_densities(density, mean, std, above_half):
    """Each time_sampling density: its moments and tail, in [0, 1), one draw of the generator."""
    bridge = Bridge(time_sampling=density)
    g = torch.Generator().manual_seed(2)
    t = bridge.sample_time(200_000, generator=g)
    assert 0 <= t.min() and t.max() < 1
    assert t.mean().item() == pytest.approx(mean, abs=0.003) and t.std().item() == pytest.approx(std, abs=0.003)
    assert (t > 0.5).double().mean().item() == pytest.approx(above_half, abs=0.005)
    torch.testing.assert_close(t, bridge.sample_time(200_000, generator=torch.Generator().manual_seed(2)))
    assert not torch.equal(t, bridge.sample_time(200_000, generator=g))  # the generator moved on


@pytest.mark.parametrize("noise,share", [(n, DEFAULT_ANCHOR_SHARE) for n in NOISE_MODES] + [("constant", 0.8),
                                                                                             ("bridge", 0.0)])
def test_anchored_time_puts_its_share_of_draws_on_the_samplers_first_input(noise, share):
    """``anchored``: P(t = 1) = anchor_share (1/2 by default) and U[0, 1) otherwise; at t = 1 the
    path is the DEM itself (no path noise in any mode), what every sampler's first evaluation sees."""
    bridge = Bridge(noise, time_sampling="anchored", anchor_share=share)
    t = bridge.sample_time(200_000, generator=torch.Generator().manual_seed(3))
    at_dem = t == 1
    assert at_dem.double().mean().item() == pytest.approx(share, abs=0.005)
    rest = t[~at_dem]
    assert 0 <= rest.min() and rest.max() < 1
    assert rest.mean().item() == pytest.approx(0.5, abs=0.003)
    assert rest.std().item() == pytest.approx(1 / math.sqrt(12), abs=0.003)
    torch.testing.assert_close(t, bridge.sample_time(200_000, generator=torch.Generator().manual_seed(3)))
    x0, x1, _ = _pair()
    tt = torch.tensor([1.0, 0.5, 1.0, 0.25])[: x0.shape[0]]
    x_t = bridge.interpolate(x0, x1, tt, torch.randn_like(x0))
    for row in range(x0.shape[0]):
        if tt[row] == 1:
            torch.testing.assert_close(x_t[row], x1[row], rtol=0, atol=0)
        elif noise != "none":  # a point inside the path keeps its noise
            assert not torch.allclose(x_t[row], (1 - tt[row]) * x0[row] + tt[row] * x1[row])


@pytest.mark.parametrize("noise", NOISE_MODES)
def test_outputs_of_each_prediction(noise):
    """velocity: o is v and x0_hat = x1 - o; x0: o is x0_hat (or its correction to the prior)
    and v = x1 - x0_hat, so the true depth as output gives the true velocity, in every mode."""
    x0, x1, prior = _pair()
    u = Bridge.velocity_target(x0, x1)
    cases = [(Bridge(noise), u, None), (Bridge(noise, prediction="x0"), x0, None),
             (Bridge(noise, prediction="x0", prior_residual=True), x0 - prior, prior)]
    for bridge, out, p in cases:
        v, x0_hat = bridge.outputs(out, x1, p)
        torch.testing.assert_close(v, u)
        torch.testing.assert_close(x0_hat, x0)
        torch.testing.assert_close(bridge.velocity(out, x1, p), v)
    with pytest.raises(ValueError, match="prior"):
        Bridge(prediction="x0", prior_residual=True).outputs(x0, x1, None)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("method", SAMPLERS)
@pytest.mark.parametrize("nfe", [1, 2, 3, 10])
def test_x0_prediction_samples_with_exactly_nfe_network_calls(method, nfe, residual):
    """A clean-depth network (here, one that knows x0) drives the samplers through the derived
    velocity: exactly nfe calls, and a deterministic sampler lands on x0 at any budget."""
    x0, x1, prior = _pair()
    bridge = Bridge("bridge" if residual else "constant", prediction="x0", prior_residual=residual)
    net = CountingVelocity(lambda x: x0 - prior if residual else x0)
    got = bridge.sample(lambda x, t: bridge.velocity(net(x, t), x1, prior), x1, nfe, method,
                        generator=torch.Generator().manual_seed(0))
    assert len(net.times) == nfe
    if method != "euler_maruyama":
        torch.testing.assert_close(got, x0)


def test_bridge_settings_round_trip_and_bad_combinations():
    bridge = Bridge("bridge", 0.2, prediction="x0", prior_residual=True, time_sampling="beta_dem")
    assert Bridge(**bridge.to_dict()) == bridge
    anchored = Bridge(prediction="x0", time_sampling="anchored", anchor_share=0.8)
    assert Bridge(**anchored.to_dict()) == anchored
    assert Bridge().to_dict() == {"noise": "constant", "sigma": 0.1, "prediction": "velocity",
                                  "prior_residual": False, "time_sampling": "uniform", "anchor_share": 0.5}
    for bad in ({"prediction": "eps"}, {"time_sampling": "cosine"}, {"prior_residual": True}):
        with pytest.raises(ValueError):
            Bridge(**bad)


@pytest.mark.parametrize("noise", NOISE_MODES)
def test_clean_estimate_is_exact_for_the_true_velocity(noise):
    """x0_hat = x1 - v recovers x0 in every mode; x_t - t v would carry the path noise."""
    x0, x1, eps = _pair()
    t = torch.tensor([0.2, 0.5, 0.7])
    bridge = Bridge(noise, sigma=0.1)
    v = bridge.velocity_target(x0, x1)
    torch.testing.assert_close(bridge.clean_estimate(x1, v), x0)
    x_t = bridge.interpolate(x0, x1, t, eps)
    naive_error = (x_t - t.view(-1, 1, 1, 1) * v - x0).abs().max()
    assert (naive_error < 1e-6) == (noise == "none")


class CountingVelocity:
    """A velocity field that records every evaluation (a real function, not a mock)."""

    def __init__(self, field):
        self.field, self.times = field, []

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],)
        self.times.append(float(t[0]))
        return self.field(x)


@pytest.mark.parametrize("method", SAMPLERS)
@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 5, 10])
def test_sampler_calls_the_network_exactly_nfe_times(method, nfe):
    x0, x1, _ = _pair()
    net = CountingVelocity(lambda x: x1 - x0)
    out = Bridge("constant").sample(net, x1, nfe, method, generator=torch.Generator().manual_seed(0))
    assert len(net.times) == nfe
    assert net.times[0] == 1.0 and all(0.0 <= t <= 1.0 for t in net.times)
    if method != "euler_maruyama":
        # a constant velocity is a straight path: any step count lands exactly on x0
        torch.testing.assert_close(out, x0)


def test_heun_is_more_accurate_than_euler():
    """dx/dt = x from t = 1 (x = 1) back to t = 0 gives exp(-1)."""
    x1 = torch.ones(1, 1, 1, 1)
    exact = math.exp(-1)
    err = {m: abs(Bridge("none").sample(lambda x, t: x, x1, 10, m).item() - exact) for m in ("euler", "heun")}
    assert err["heun"] < err["euler"] / 5  # same budget: 5 Heun steps beat 10 Euler steps


def test_euler_maruyama():
    x1 = torch.zeros(1, 1, 200, 200)
    zero = lambda x, t: torch.zeros_like(x)
    # without noise it is Euler
    assert Bridge("none").sample(zero, x1, 5, "euler_maruyama").abs().max() == 0
    # constant: Brownian increments sigma^2 h per step, none on the last step
    n, sigma = 4, 0.3
    out = Bridge("constant", sigma).sample(zero, x1, n, "euler_maruyama", torch.Generator().manual_seed(0))
    assert out.var().item() == pytest.approx(sigma**2 * (1 - 1 / n), rel=0.03)
    # reproducible with a generator
    again = Bridge("constant", sigma).sample(zero, x1, n, "euler_maruyama", torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)
    # bridge: conditional variances sigma^2 h s / t of a bridge pinned at t = 0
    out = Bridge("bridge", sigma).sample(zero, x1, n, "euler_maruyama", torch.Generator().manual_seed(0))
    want = sigma**2 * sum((1 / n) * (1 - (i + 1) / n) / (1 - i / n) for i in range(n))
    assert out.var().item() == pytest.approx(want, rel=0.03)


def test_bad_arguments():
    x1 = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError):
        Bridge("sde")
    with pytest.raises(ValueError):
        Bridge("constant", sigma=-1)
    for share in (1.0, -0.1):
        with pytest.raises(ValueError, match="anchor_share"):
            Bridge(time_sampling="anchored", anchor_share=share)
    with pytest.raises(ValueError, match="anchor_share"):
        Bridge(time_sampling="uniform", anchor_share=0.8)
    for nfe in (0, 2.0):
        with pytest.raises(ValueError):
            Bridge().sample(lambda x, t: x, x1, nfe)
    with pytest.raises(ValueError):
        Bridge().sample(lambda x, t: x, x1, 3, "rk45")
