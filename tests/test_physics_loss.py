"""Continuity residual and physics loss against docs/architecture.md's identity."""

import numpy as np
import pytest
import torch

from piff.hydro.solver import simulate
from piff.model.physics import hourly_imbalance, physics_loss
from piff.units import SECONDS_PER_HOUR


def continuity_residual(*args, **kwargs):
    """The residual as a rate (m/s): the hourly imbalance over one hour."""
    return hourly_imbalance(*args, **kwargs) / SECONDS_PER_HOUR



def consistent_hour(b=2, h=6, w=7, dx=20.0, seed=0, dtype=torch.float64):
    """Depths, fluxes (boundary faces included, nonzero), rain and losses that satisfy the
    continuity identity by construction: depth_now = depth_prev + net inflow / dx + rain - loss."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(s, generator=g, dtype=dtype)
    depth_prev = 0.5 + r(b, 1, h, w)
    flux_x = 2.0 * (r(b, 1, h, w + 1) - 0.5)  # m^2: a few cm of depth change per hour at dx = 20 m
    flux_y = 2.0 * (r(b, 1, h + 1, w) - 0.5)
    rain = torch.tensor([30.0, 150.0], dtype=dtype)[:b]
    loss = 0.004 * r(b, 1, h, w)
    inflow = (flux_x[..., :-1] - flux_x[..., 1:] + flux_y[..., :-1, :] - flux_y[..., 1:, :]) / dx
    depth_now = depth_prev + inflow + rain.view(-1, 1, 1, 1) / 1000 - loss
    assert depth_now.min() > 0
    return dict(depth_now_m=depth_now, depth_prev_m=depth_prev, flux_x_m2=flux_x, flux_y_m2=flux_y,
                rain_mm_per_h=rain, dx=dx, loss_m=loss)


def test_residual_vanishes_on_a_consistent_hour():
    case = consistent_hour()
    res = continuity_residual(**case)
    assert res.shape == case["depth_now_m"].shape
    assert res.abs().max() < 1e-15  # m/s; the hourly imbalance is ~1e-16 m in float64
    assert physics_loss(**case) < 1e-20
    f32 = {k: v.float() if torch.is_tensor(v) else v for k, v in case.items()}
    assert hourly_imbalance(**f32).abs().max() < 1e-6  # float32 rounding of ~1 m depths


def test_perturbed_depth_gives_the_perturbation_over_one_hour():
    case = consistent_hour()
    case["depth_now_m"] = case["depth_now_m"].clone()
    case["depth_now_m"][1, 0, 2, 3] += 0.01
    res = continuity_residual(**case)
    assert res[1, 0, 2, 3].item() == pytest.approx(0.01 / SECONDS_PER_HOUR)
    res[1, 0, 2, 3] = 0
    assert res.abs().max() < 1e-15
    # loss: residual in mm/h by default -> a 10 mm/h error in one cell of 2 * 6 * 7
    assert physics_loss(**case).item() == pytest.approx(100.0 / 84)
    # ... or in units of scale_m
    assert physics_loss(**case, scale_m=0.5).item() == pytest.approx((0.01 / 0.5) ** 2 / 84)


def test_sign_convention_by_hand():
    """+x flux on the face between columns 0 and 1 moves water from column 0 to column 1; a
    positive flux on the right boundary face drains the last column (docs/architecture.md)."""
    dx, q = 10.0, 0.5
    zero = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
    flux_x = torch.tensor([[[[0.0, q, 0.0, q]]]], dtype=torch.float64)
    flux_y = torch.zeros(1, 1, 2, 3, dtype=torch.float64)
    prev = torch.ones_like(zero)
    now = prev + torch.tensor([-q / dx, q / dx, -q / dx], dtype=torch.float64).view(1, 1, 1, 3)
    assert continuity_residual(now, prev, flux_x, flux_y, torch.zeros(1), dx).abs().max() < 1e-18
    # the same along y: a +y (southward) flux on the bottom boundary face drains the last row
    flux_y = torch.tensor([[[[0.0], [0.0], [q]]]], dtype=torch.float64)
    prev = torch.ones(1, 1, 2, 1, dtype=torch.float64)
    now = prev - torch.tensor([0.0, q / dx], dtype=torch.float64).view(1, 1, 2, 1)
    assert continuity_residual(now, prev, torch.zeros(1, 1, 2, 2, dtype=torch.float64), flux_y,
                               torch.zeros(1), dx).abs().max() < 1e-18


def test_mask_restricts_the_mean_to_domain_cells():
    case = consistent_hour()
    case["depth_now_m"] = case["depth_now_m"].clone()
    case["depth_now_m"][:, :, 0, :] += 0.5  # break the identity on the top row only
    mask = torch.ones_like(case["depth_now_m"], dtype=torch.bool)
    mask[:, :, 0, :] = False
    assert physics_loss(**case, mask=mask) < 1e-20
    assert physics_loss(**case) > 1.0


def test_dx_per_sample_and_missing_loss():
    case = consistent_hour()
    per_sample = dict(case, dx=torch.full((2,), case["dx"], dtype=torch.float64))
    torch.testing.assert_close(continuity_residual(**per_sample), continuity_residual(**case))
    no_loss = dict(case, loss_m=None)
    torch.testing.assert_close(continuity_residual(**no_loss),
                               continuity_residual(**dict(case, loss_m=torch.zeros_like(case["loss_m"]))))


def test_gradient_flows_to_the_estimated_depth():
    case = consistent_hour()
    h = case["depth_now_m"].clone().requires_grad_(True)
    physics_loss(**dict(case, depth_now_m=h + 0.01)).backward()
    assert h.grad is not None and h.grad.abs().min() > 0


def test_shape_mismatch_is_reported():
    case = consistent_hour()
    with pytest.raises(ValueError, match="flux_x"):
        continuity_residual(**dict(case, flux_x_m2=case["flux_x_m2"][..., :-1]))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_residual_vanishes_on_solver_output(dtype, tol):
    """Every hour of a real solver run (rain, infiltration, free and sea edges) is consistent."""
    y, x = np.mgrid[0:12, 0:10]
    z = 0.02 * x + 0.3 * np.sin(y / 2.0) + 0.1 * np.cos(x / 1.5)
    run = simulate(z, 10.0, [60.0, 150.0, 0.0], boundaries="right=free,top=sea:0.1", infiltration_mm_per_h=5.0,
                   dtype=dtype)
    assert np.abs(run.flux_x[0, 1:, :, -1]).max() > 0  # water does leave through the free edge
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    hours = dict(depth_now_m=t(run.depth[0, 1:, None]), depth_prev_m=t(run.depth[0, :-1, None]),
                 flux_x_m2=t(run.flux_x[0, 1:, None]), flux_y_m2=t(run.flux_y[0, 1:, None]),
                 rain_mm_per_h=t(run.rain_mm_per_h[0, 1:]), dx=run.dx, loss_m=t(run.loss[0, 1:, None]))
    assert hourly_imbalance(**hours).abs().max() < tol  # metres per hour
    perturbed = dict(hours, depth_now_m=hours["depth_now_m"] + 0.01)
    assert continuity_residual(**perturbed).abs().min() > 0.9 * 0.01 / SECONDS_PER_HOUR
