"""Bridge math: the path of each noise mode, the clean estimate, NFE accounting of the samplers."""

import math

import pytest
import torch

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
    t = Bridge.sample_time(10_000, generator=torch.Generator().manual_seed(1))
    assert 0 <= t.min() and t.max() < 1 and abs(t.mean().item() - 0.5) < 0.02
    torch.testing.assert_close(t, Bridge.sample_time(10_000, generator=torch.Generator().manual_seed(1)))


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
    for nfe in (0, 2.0):
        with pytest.raises(ValueError):
            Bridge().sample(lambda x, t: x, x1, nfe)
    with pytest.raises(ValueError):
        Bridge().sample(lambda x, t: x, x1, 3, "rk45")
