"""The PIFF model (the network of the depth <-> DEM bridge) and its runner: the training
objective and the sampler that returns depth in metres.

Batch dict (physical units, as produced by ``piff.data.torch_dataset``): ``depth``,
``depth_prev``, ``elevation``, ``prior`` (the SPM or coarse prior map), ``loss`` (B, 1, H, W) m;
``rain_window`` (B, 24) mm/h;
``flux_x`` (B, 1, H, W+1), ``flux_y`` (B, 1, H+1, W) m^2; ``rain_mm_per_h`` (B,) mm/h of the
hour ending at the target; ``dx`` (B,) m; ``hour`` (B,). Optional: ``valid`` (B, 1, H, W) bool, True inside
the domain (restricts the physics loss to real cells; nodata walls get no rain in the solver).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from piff.choices import DEPTH_LOSSES, PHYSICS_FLUX_MODES
from piff.hydro.metrics import WET_M
from piff.model.bridge import Bridge
from piff.model.config import ModelConfig
from piff.model.networks import ConditionedNet, eval_mode
from piff.model.normalise import Normaliser
from piff.model.physics import depth_scaled_fluxes, physics_loss
from piff.model.regression import RegressionModel

PHYSICS_KEYS = ("depth_prev", "flux_x", "flux_y", "rain_mm_per_h", "dx")
# depth_loss="wet_l1": a cell the truth has wet (>= WET_M) weighs this many times a dry one
WET_L1_WEIGHT = 5.0


class PIFFModel(ConditionedNet):
    """The bridge's network o(x_t, t | DEM, prior, rain): the velocity, or the clean depth in
    ``x0`` mode (``Bridge.prediction``; ``Bridge.outputs`` turns o into the velocity and the
    clean estimate). Inputs and output in model space (see ``Normaliser``)."""

    def __init__(self, config: ModelConfig):
        if config.kind != "piff":
            raise ValueError(f"PIFFModel needs a config of kind 'piff', got {config.kind!r}")
        super().__init__(config)

    def output(self, x_t, t, elevation_model, prior_model, context) -> torch.Tensor:
        """As ``forward`` with a precomputed rain ``context`` (B, 24, rain_width): the sampler
        encodes the rain once and reuses it at every step."""
        return self.run([x_t, elevation_model], prior_model, t, context)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, elevation_model: torch.Tensor,
                prior_model: torch.Tensor | None, rain_window_mm_per_h: torch.Tensor) -> torch.Tensor:
        """x_t, elevation_model, prior_model: (B, 1, H, W) model space; t: (B,) in [0, 1];
        rain_window_mm_per_h: (B, 24). Returns the network output o (B, 1, H, W), model space."""
        return self.output(x_t, t, elevation_model, prior_model, self.encode_rain(rain_window_mm_per_h))


def training_loss(model: PIFFModel, bridge: Bridge, normaliser: Normaliser, batch: dict,
                  use_physics: bool = False, physics_weight: float = 0.1,
                  generator: torch.Generator | None = None, physics_flux: str = "scaled",
                  depth_loss: str = "none", depth_loss_weight: float = 1.0,
                  velocity_loss_weight: float = 1.0, physics_norm: str = "l2") -> tuple[torch.Tensor, dict]:
    """velocity_loss_weight * velocity MSE (+ physics_weight * continuity loss) (+ depth_loss_weight
    * depth loss) on one batch.

    t comes from ``bridge.sample_time`` (its ``time_sampling`` density); the network output is
    turned into the velocity v and the clean estimate x0_hat by ``bridge.outputs`` (velocity or
    x0 prediction, optionally a residual on the prior). The MSE is |v - (x1 - x0)|^2 in both
    modes; in ``x0`` mode it is computed as the equal |x0_hat - x0|^2 (no DEM-sized terms to
    cancel in float32).

    The physics term takes h_now = x0_hat in metres (differentiable through the normaliser) and
    h_prev, fluxes, rain and losses from the data; its residual is expressed in model depth units
    per hour (``scale_m = normaliser.depth_scale``) so it is on the scale of the MSE.
    ``physics_norm="l1"`` (``piff.choices.PHYSICS_NORMS``) takes mean |R| in metres instead, on the
    scale of the L1 depth loss: with the data's fluxes it is that loss exactly, so it seeks the
    conditional median as the L1 loss does, where the squared residual seeks the mean (which on
    a cell that is usually dry but sometimes wet is above 0).

    ``depth_loss`` (``piff.choices.DEPTH_LOSSES``), on x0_hat de-normalised to metres against the
    true depth: ``l1`` = mean |h_hat - h| [m]; ``wet_l1`` = mean(w |h_hat - h|) with w =
    ``WET_L1_WEIGHT`` on cells the truth has wet (>= ``piff.hydro.metrics.WET_M``) and 1 elsewhere,
    so the wet cells, a minority of most maps, count for more; ``none`` adds nothing.
    ``depth_loss_weight`` is per metre of mean absolute error.

    Returns (scalar loss, logs) with detached scalar tensors in logs (no host sync here; call
    ``.item()`` when logging). ``generator`` must live on the batch's device; with it, t and the
    noise are reproducible.

    Note: with h_prev and the fluxes taken from the data, the data satisfy the identity, so
    R(x0_hat) = (h_hat - h) / 1 h exactly and the physics term equals the velocity MSE (up to
    rounding and cells where the data break the identity): it re-weights the MSE rather than
    adding new information (``physics_flux="data"``, tested in
    tests/test_model_training_smoke.py). ``physics_flux="scaled"`` (the default) rescales the
    data's fluxes to the model's face depths (``physics.depth_scaled_fluxes``), which still
    vanishes on the data but couples each cell to its neighbours through the faces.
    """
    if depth_loss not in DEPTH_LOSSES:
        raise ValueError(f"depth_loss must be one of {DEPTH_LOSSES}, got {depth_loss!r}")
    x0 = normaliser.to_model_depth(batch["depth"])
    x1 = normaliser.to_model_elevation(batch["elevation"])
    t = bridge.sample_time(x0.shape[0], x0.device, generator)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = bridge.interpolate(x0, x1, t, eps)
    prior_model = model.prior_input(normaliser, batch["prior"])
    v, x0_hat = bridge.outputs(model(x_t, t, x1, prior_model, batch["rain_window"]), x1, prior_model)
    if bridge.prediction == "velocity":
        mse = (v - bridge.velocity_target(x0, x1)).square().mean()
    else:  # v - (x1 - x0) = x0 - x0_hat
        mse = (x0_hat - x0).square().mean()
    logs = {"mse": mse.detach()}
    loss = velocity_loss_weight * mse
    if use_physics:
        phys = _physics_term(normaliser, batch, x0_hat, physics_flux, physics_norm)
        loss = loss + physics_weight * phys
        logs["physics"] = phys.detach()
    if depth_loss != "none":
        dl = depth_loss_m(normaliser.to_metres_depth(x0_hat), batch["depth"], depth_loss)
        loss = loss + depth_loss_weight * dl
        logs["depth_loss"] = dl.detach()
    logs["loss"] = loss.detach()
    return loss, logs


def depth_loss_m(depth_hat_m: torch.Tensor, depth_m: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """The ``l1`` or ``wet_l1`` depth loss of ``training_loss`` [m], (B, 1, H, W) maps in metres."""
    err = (depth_hat_m - depth_m).abs()
    if kind == "wet_l1":
        err = err * torch.where(depth_m >= WET_M, WET_L1_WEIGHT, 1.0).to(err.dtype)
    return err.mean()


def _physics_term(normaliser, batch, x0_hat, physics_flux="scaled", physics_norm="l2") -> torch.Tensor:
    missing = [k for k in PHYSICS_KEYS if k not in batch]
    if missing:
        raise KeyError(f"use_physics needs batch keys {missing} (build the dataset with with_physics=True)")
    if physics_flux not in PHYSICS_FLUX_MODES:
        raise ValueError(f"physics_flux must be one of {PHYSICS_FLUX_MODES}, got {physics_flux!r}")
    depth_now_m = normaliser.to_metres_depth(x0_hat)
    flux_x, flux_y = batch["flux_x"], batch["flux_y"]
    if physics_flux != "data":
        prev = batch["depth_prev"] if physics_flux == "scaled_hour_mean" else None
        flux_x, flux_y = depth_scaled_fluxes(depth_now_m, batch["depth"], flux_x, flux_y, depth_prev_m=prev)
    scale_m = normaliser.depth_scale if physics_norm == "l2" else 1.0  # l1: metres, as the L1 depth loss
    return physics_loss(depth_now_m, batch["depth_prev"], flux_x, flux_y, batch["rain_mm_per_h"],
                        batch["dx"], batch.get("loss"), scale_m=scale_m, mask=batch.get("valid"), norm=physics_norm)


@torch.no_grad()
def sample(model: PIFFModel, bridge: Bridge, normaliser: Normaliser, elevation: torch.Tensor,
           prior: torch.Tensor | None, rain_window: torch.Tensor, nfe: int = 10, method: str = "euler",
           generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """Depth maps in metres (B, 1, H, W), clamped >= 0, from elevation (B, 1, H, W) m, the
    prior map (B, 1, H, W) m (ignored when the model was built with use_prior=False) and the rain
    window (B, 24) mm/h, with exactly ``nfe`` network evaluations (the velocity is derived from
    each network output by ``bridge.velocity``, whatever the bridge's ``prediction``). Runs in
    eval mode; wrap in ``ema.swapped_in()`` to sample with the averaged weights."""
    x1 = normaliser.to_model_elevation(elevation)
    prior_model = model.prior_input(normaliser, prior)
    with eval_mode(model):
        context = model.encode_rain(rain_window)

        def velocity(x, t):
            return bridge.velocity(model.output(x, t, x1, prior_model, context), x1, prior_model)

        x0 = bridge.sample(velocity, x1, nfe, method, generator)
    return normaliser.to_metres_depth(x0).clamp_min(0)


def build_model(config: ModelConfig) -> PIFFModel | RegressionModel:
    """The network a config describes (``config.kind``: "piff" or "regression")."""
    return PIFFModel(config) if config.kind == "piff" else RegressionModel(config)
