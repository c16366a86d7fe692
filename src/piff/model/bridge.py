"""The continuous-time bridge between depth (t = 0) and DEM (t = 1): path, target, samplers.

Pure tensor math, no network: the runner (``piff_model``) supplies a velocity function.

Path. With x0 the normalised depth map, x1 the normalised DEM and eps ~ N(0, I):

    x_t = (1 - t) x0 + t x1 + s(t) eps,   t ~ p(t) in [0, 1] (``time_sampling``, default U[0, 1))

At t = 1 the path is the DEM itself (s(1) = 0 in every mode), the point every sampler starts
from; the continuous densities never draw t = 1, so this matters only for ``anchored``.

    noise mode   s(t)                        paper name
    ``none``     0                           "ot-ode" (rectified flow, OT-CFM with sigma = 0)
    ``constant`` sigma                       "sde" + "novar"
    ``bridge``   sigma * sqrt(t (1 - t))     Brownian-bridge variance, 0 at both ends

Target. The training loss is the velocity MSE |v - u|^2 against u = x1 - x0, in every
noise mode and every output parameterisation.

Clean estimate. Because x1 (the DEM) is known exactly at training and sampling time,
x0_hat = x1 - v. Do *not* use x_t - t v: substituting the path gives
x_t - t u = x0 + s(t) eps, i.e. that formula returns the depth plus the path noise, which is
biased in the noisy modes (and is only equal to x1 - v for ``none``).

Output parameterisation (``prediction``). What the network outputs; the samplers and the loss
above always see the velocity derived from it.

    prediction   network output o     clean estimate x0_hat           velocity v
    ``velocity`` the velocity (paper) x1 - o                          o
    ``x0``       the clean depth      o, or prior + o (prior_residual) x1 - x0_hat

Why v = x1 - x0_hat in ``x0`` mode, and not (x_t - x0_hat) / t. The regression target
u = x1 - x0 depends on the pair (x0, x1) only, not on t or eps; x1 is an input of the network
(the DEM channel), so the MSE-optimal velocity is E[u | x_t, x1, ...] = x1 - E[x0 | x_t, x1, ...]:
an optimal clean-depth network gives, through v = x1 - x0_hat, exactly the field an optimal
velocity network learns. The two modes thus solve the same regression (the loss is identical:
v - u = x0 - x0_hat) and share the samplers; only what the network must output differs. In
``velocity`` mode it must reproduce the standardised DEM (about +-2 units) to within the
depth error in every cell, dry land included; in ``x0`` mode it outputs the depth (mostly 0)
and the DEM term is exact. The alternative (x_t - x0_hat) / t comes from solving the path for
x1 instead of using the known one: substituting the path gives
(x_t - x0_hat) / t = x1 - x0_hat + s(t) eps / t: it differs from the regressed field by the
path noise (unknown at sampling, where x1 is known) divided by t, which grows as 1 / t near the
depth end; it equals x1 - x0_hat only on a noise-free path.
With v = x1 - x0_hat, an Euler sample is x(0) = x1 - sum_i h_i v_i = sum_i h_i x0_hat_i: the
step-weighted mean of the network's depth estimates along the path (at NFE 1, the estimate at
t = 1 itself, a one-shot prediction as the U-Net baseline makes).

``prior_residual`` (``x0`` mode only): x0_hat = prior + o, the network predicts the correction
to the prior channel (SPM or coarse map, in model depth units) rather than the depth.

Training time density (``time_sampling``), t in [0, 1):

* ``uniform``: U[0, 1) (the paper).
* ``logit_normal``: t = sigmoid(n), n ~ N(0, 1): more weight mid-path, the density of
  Esser et al. 2024 (SD3, "Scaling rectified flow transformers", arXiv 2403.03206, sec. 3.1).
* ``beta_dem``: t = 1 - s + s b with b ~ Beta(1.5, 1), s = 0.999: pi0's time density
  (Black et al. 2024, "pi0: a vision-language-action flow model", arXiv 2410.24164: the
  Beta((s - tau) / s; 1.5, 1) density that favours the source end of the flow); here the
  source is the DEM end t = 1, where every sampler makes its first evaluation (its only one
  at NFE 1). Density proportional to sqrt(t - 0.001), mean about 0.6.
* ``anchored``: with probability ``anchor_share`` (1/2 by default) t = 1 exactly, else
  U[0, 1).
  The atom at t = 1 trains the network on exactly the input of every sampler's first
  evaluation (x = x1, t = 1, no path noise), which is the whole sample at NFE 1 and its
  largest step at NFE 2 (x(0) is the step-weighted mean of the estimates, see above); under
  U[0, 1) that input is only approached, and the first estimate gets no more training than
  any other point of the path. The rest of the path keeps the paper's uniform density, so
  every NFE stays a sampler of the same bridge.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from piff.choices import DEFAULT_ANCHOR_SHARE, NOISE_MODES, PREDICTIONS, SAMPLERS, TIME_SAMPLINGS, anchor_share_problem

DEFAULT_SIGMA = 0.1
# pi0's shifted Beta time density (module docstring): Beta(alpha, 1) and the shift s
BETA_DEM_ALPHA = 1.5
BETA_DEM_SHIFT = 0.999

# velocity_fn(x_t (B, C, H, W), t (B,)) -> v (B, C, H, W)
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Bridge:
    """Path, target and samplers of the depth <-> DEM bridge (see module docstring)."""

    noise: str = "constant"
    sigma: float = DEFAULT_SIGMA
    prediction: str = "velocity"
    prior_residual: bool = False
    time_sampling: str = "uniform"
    anchor_share: float = DEFAULT_ANCHOR_SHARE  # ``anchored`` only: P(t = 1) in training

    def __post_init__(self):
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}")
        if self.prior_residual and self.prediction != "x0":
            raise ValueError("prior_residual needs prediction='x0'")
        if problem := anchor_share_problem(self.anchor_share, self.time_sampling):
            raise ValueError(problem)

    def to_dict(self) -> dict:
        """The settings stored in model.pt (``piff.model.trained.load_trained`` reads them back;
        files of earlier versions hold noise and sigma only: the others take their defaults)."""
        return {"noise": self.noise, "sigma": self.sigma, "prediction": self.prediction,
                "prior_residual": self.prior_residual, "time_sampling": self.time_sampling,
                "anchor_share": self.anchor_share}

    # ---- training ----
    def noise_std(self, t: torch.Tensor) -> torch.Tensor:
        """s(t) of the path, same shape as ``t``; 0 at t = 1 in every mode (the DEM end)."""
        if self.noise == "none":
            return torch.zeros_like(t)
        if self.noise == "constant":
            return torch.where(t < 1, self.sigma, 0.0).to(t.dtype)
        return self.sigma * (t * (1 - t)).clamp_min(0).sqrt()

    def sample_time(self, batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """t from the ``time_sampling`` density, shape (batch,): in [0, 1), or [0, 1] for
        ``anchored``; one draw of ``generator``."""
        if self.time_sampling == "logit_normal":
            return torch.sigmoid(torch.randn(batch, device=device, generator=generator)).clamp_max(1 - 1e-7)
        if self.time_sampling == "anchored":  # one uniform draw decides the atom and places the rest
            u = torch.rand(batch, device=device, generator=generator)
            a = self.anchor_share
            return torch.where(u < a, 1.0, (u - a) / (1 - a))
        u = torch.rand(batch, device=device, generator=generator)
        if self.time_sampling == "beta_dem":  # inverse CDF of Beta(alpha, 1): u ** (1 / alpha)
            return 1 - BETA_DEM_SHIFT + BETA_DEM_SHIFT * u.pow(1 / BETA_DEM_ALPHA)
        return u

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

    def outputs(self, out: torch.Tensor, x1: torch.Tensor, prior: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity v, clean estimate x0_hat) from the network output ``out`` (model space),
        by the ``prediction`` table of the module docstring; ``prior`` is the prior channel in
        model space (needed by ``prior_residual`` only)."""
        if self.prediction == "velocity":
            return out, x1 - out
        if self.prior_residual:
            if prior is None:
                raise ValueError("prior_residual needs the prior channel (a model built with use_prior)")
            out = prior + out
        return x1 - out, out

    def velocity(self, out: torch.Tensor, x1: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """The velocity the samplers integrate, from the network output (see ``outputs``)."""
        return self.outputs(out, x1, prior)[0]

    # ---- sampling ----
    def sample(self, velocity_fn: VelocityFn, x1: torch.Tensor, nfe: int, method: str = "euler",
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Integrate from x1 (B, C, H, W) at t = 1 to t = 0 with exactly ``nfe`` calls of
        ``velocity_fn``; returns x at t = 0 (model space). ``generator`` (on x1's device) makes
        ``euler_maruyama`` reproducible; a sequence of B generators draws row b's noise from the
        b-th, so a row's sample does not depend on the rows batched with it. The deterministic
        methods ignore it."""
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
                x = x + std * _noise(x, generator)
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


def _noise(like: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, from one generator or one per row."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(like.shape, device=like.device, dtype=like.dtype, generator=generator)
    if len(generator) != like.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {like.shape[0]}")
    return torch.stack([torch.randn(like.shape[1:], device=like.device, dtype=like.dtype, generator=g)
                        for g in generator])


def _time_grid(n: int) -> list[float]:
    """n + 1 uniform times from 1 down to 0 (exact end points)."""
    return [1.0 - i / n for i in range(n)] + [0.0]


def _full(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against ``like``."""
    return t.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)
