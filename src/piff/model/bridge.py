"""The continuous-time bridge between depth (t = 0) and DEM (t = 1): path, target, samplers.

Pure tensor math, no network: the runner (``piff_model``) supplies a velocity function.

Path. With x0 the normalised depth map, x1 the normalised DEM and eps ~ N(0, I):

    x_t = (1 - t) x0 + t x1 + s(t) eps,   t ~ U[0, 1)

    noise mode   s(t)                        paper name
    ``none``     0                           "ot-ode" (rectified flow, OT-CFM with sigma = 0)
    ``constant`` sigma                       "sde" + "novar"
    ``bridge``   sigma * sqrt(t (1 - t))     Brownian-bridge variance, 0 at both ends

Target. The network regresses u = x1 - x0 (plain MSE), in every noise mode.

Clean estimate. Because x1 (the DEM) is known exactly at training and sampling time,
x0_hat = x1 - v. Do *not* use x_t - t v: substituting the path gives
x_t - t u = x0 + s(t) eps, i.e. that formula returns the depth plus the path noise, which is
biased in the noisy modes (and is only equal to x1 - v for ``none``).

Sampling integrates dx/dt = v from x = x1 at t = 1 down to t = 0 on the uniform grid
t_i = 1 - i / N. ``nfe`` is exactly the number of network evaluations:

* ``euler``: nfe steps of x <- x - h v(x, t).
* ``heun``: ceil(nfe / 2) steps; each is Heun's predictor-corrector (2 evaluations) except
  that, when nfe is odd, the last step is a plain Euler step (1 evaluation). So any nfe >= 1
  works; nfe = 1 is one Euler step.
* ``euler_maruyama``: nfe Euler steps plus Gaussian noise. For ``constant`` the added std is
  sigma sqrt(h) (Brownian motion of rate sigma^2). For ``bridge`` it is the Brownian-bridge
  conditional std sigma sqrt(h s / t) from t to s = t - h, which vanishes on the step to
  s = 0 as the path's variance does. The last step (to t = 0) adds no noise in any mode, so
  the result is the integrated estimate rather than a noised one. For ``none`` it is Euler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from piff.choices import NOISE_MODES, SAMPLERS

DEFAULT_SIGMA = 0.1

# velocity_fn(x_t (B, C, H, W), t (B,)) -> v (B, C, H, W)
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Bridge:
    """Path, target and samplers of the depth <-> DEM bridge (see module docstring)."""

    noise: str = "constant"
    sigma: float = DEFAULT_SIGMA

    def __post_init__(self):
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")

    # ---- training ----
    def noise_std(self, t: torch.Tensor) -> torch.Tensor:
        """s(t) of the path, same shape as ``t``."""
        if self.noise == "none":
            return torch.zeros_like(t)
        if self.noise == "constant":
            return torch.full_like(t, self.sigma)
        return self.sigma * (t * (1 - t)).clamp_min(0).sqrt()

    @staticmethod
    def sample_time(batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """t ~ U[0, 1), shape (batch,)."""
        return torch.rand(batch, device=device, generator=generator)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t for x0, x1, eps of shape (B, C, H, W) and t of shape (B,)."""
        tb = _bcast(t, x0)
        return (1 - tb) * x0 + tb * x1 + _bcast(self.noise_std(t), x0) * eps

    @staticmethod
    def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return x1 - x0

    @staticmethod
    def clean_estimate(x1: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x0_hat = x1 - v (exact for every noise mode; see module docstring)."""
        return x1 - v

    # ---- sampling ----
    def sample(self, velocity_fn: VelocityFn, x1: torch.Tensor, nfe: int, method: str = "euler",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Integrate from x1 (B, C, H, W) at t = 1 to t = 0 with exactly ``nfe`` calls of
        ``velocity_fn``; returns x at t = 0 (model space). ``generator`` (on x1's device) makes
        ``euler_maruyama`` reproducible; the deterministic methods ignore it."""
        if not isinstance(nfe, int) or nfe < 1:
            raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
        if method == "euler":
            return self._euler(velocity_fn, x1, nfe, None)
        if method == "euler_maruyama":
            return self._euler(velocity_fn, x1, nfe, generator, stochastic=True)
        if method == "heun":
            return self._heun(velocity_fn, x1, nfe)
        raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")

    def _euler(self, velocity_fn, x, n, generator, stochastic=False):
        grid = _time_grid(n)
        for t, s in zip(grid[:-1], grid[1:]):
            x = x - (t - s) * velocity_fn(x, _full(x, t))
            std = self._em_std(t, s) if stochastic else 0.0
            if std > 0:
                x = x + std * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        return x

    def _heun(self, velocity_fn, x, nfe):
        n_steps = (nfe + 1) // 2
        grid = _time_grid(n_steps)
        for i, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
            h = t - s
            v = velocity_fn(x, _full(x, t))
            if i == n_steps - 1 and nfe % 2 == 1:  # odd budget: the last step is Euler
                x = x - h * v
                continue
            x_pred = x - h * v
            x = x - h * 0.5 * (v + velocity_fn(x_pred, _full(x, s)))
        return x

    def _em_std(self, t: float, s: float) -> float:
        """Std of the noise added on the step t -> s (s < t); 0 on the final step."""
        if self.noise == "none" or s <= 0:
            return 0.0
        if self.noise == "constant":
            return self.sigma * math.sqrt(t - s)
        return self.sigma * math.sqrt((t - s) * s / t)


def _time_grid(n: int) -> list[float]:
    """n + 1 uniform times from 1 down to 0 (exact end points)."""
    return [1.0 - i / n for i in range(n)] + [0.0]


def _full(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like``."""
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)
