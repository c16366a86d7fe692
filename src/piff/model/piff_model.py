"""The PIFF model (velocity network of the depth <-> DEM bridge) and its runner: the training
objective and the sampler that returns depth in metres.

Batch dict (physical units, as produced by ``piff.data.torch_dataset``): ``depth``,
``depth_prev``, ``elevation``, ``prior`` (the SPM or coarse prior map), ``loss`` (B, 1, H, W) m;
``rain_window`` (B, 24) mm/h;
``flux_x`` (B, 1, H, W+1), ``flux_y`` (B, 1, H+1, W) m^2; ``rain_mm_per_h`` (B,) mm/h of the
hour ending at the target; ``dx`` (B,) m; ``hour`` (B,). Optional: ``valid`` (B, 1, H, W) bool, True inside
the domain (restricts the physics loss to real cells; nodata walls get no rain in the solver).
"""

from __future__ import annotations

import torch

from piff.choices import PHYSICS_FLUX_MODES
from piff.model.bridge import Bridge
from piff.model.config import ModelConfig
from piff.model.networks import ConditionedNet, eval_mode
from piff.model.normalise import Normaliser
from piff.model.physics import depth_scaled_fluxes, physics_loss
from piff.model.regression import RegressionModel

PHYSICS_KEYS = ("depth_prev", "flux_x", "flux_y", "rain_mm_per_h", "dx")


class PIFFModel(ConditionedNet):
    """Velocity network v(x_t, t | DEM, prior, rain). Inputs in model space (see ``Normaliser``)."""

    def __init__(self, config: ModelConfig):
        if config.kind != "piff":
            raise ValueError(f"PIFFModel needs a config of kind 'piff', got {config.kind!r}")
        super().__init__(config)

    def velocity(self, x_t, t, elevation_model, prior_model, context) -> torch.Tensor:
        """As ``forward`` with a precomputed rain ``context`` (B, 24, rain_width): the sampler
        encodes the rain once and reuses it at every step."""
        return self.run([x_t, elevation_model], prior_model, t, context)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, elevation_model: torch.Tensor,
                prior_model: torch.Tensor | None, rain_window_mm_per_h: torch.Tensor) -> torch.Tensor:
        """x_t, elevation_model, prior_model: (B, 1, H, W) model space; t: (B,) in [0, 1];
        rain_window_mm_per_h: (B, 24). Returns the velocity (B, 1, H, W), model space."""
        return self.velocity(x_t, t, elevation_model, prior_model, self.encode_rain(rain_window_mm_per_h))


def training_loss(model: PIFFModel, bridge: Bridge, normaliser: Normaliser, batch: dict,
                  use_physics: bool = False, physics_weight: float = 0.1,
                  generator: torch.Generator | None = None, physics_flux: str = "scaled") -> tuple[torch.Tensor, dict]:
    """Velocity MSE (+ physics_weight * continuity loss) on one batch.

    The physics term takes h_now = the clean estimate x0_hat = x1 - v in metres (differentiable
    through the normaliser) and h_prev, fluxes, rain and losses from the data; its residual is
    expressed in model depth units per hour (``scale_m = normaliser.depth_scale``) so it is on
    the scale of the MSE. Returns (scalar loss, logs) with detached scalar tensors in logs
    (no host sync here; call ``.item()`` when logging). ``generator`` must live on the batch's
    device; with it, t and the noise are reproducible.

    Note: with h_prev and the fluxes taken from the data, the data satisfy the identity, so
    R(x0_hat) = (h_hat - h) / 1 h exactly and the physics term equals the velocity MSE (up to
    rounding and cells where the data break the identity): it re-weights the MSE rather than
    adding new information (``physics_flux="data"``, tested in
    tests/test_model_training_smoke.py). ``physics_flux="scaled"`` (the default) rescales the
    data's fluxes to the model's face depths (``physics.depth_scaled_fluxes``), which still
    vanishes on the data but couples each cell to its neighbours through the faces.
    """
    x0 = normaliser.to_model_depth(batch["depth"])
    x1 = normaliser.to_model_elevation(batch["elevation"])
    t = bridge.sample_time(x0.shape[0], x0.device, generator)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = bridge.interpolate(x0, x1, t, eps)
    v = model(x_t, t, x1, model.prior_input(normaliser, batch["prior"]), batch["rain_window"])
    mse = (v - bridge.velocity_target(x0, x1)).square().mean()
    logs = {"mse": mse.detach()}
    loss = mse
    if use_physics:
        phys = _physics_term(bridge, normaliser, batch, x1, v, physics_flux)
        loss = mse + physics_weight * phys
        logs["physics"] = phys.detach()
    logs["loss"] = loss.detach()
    return loss, logs


def _physics_term(bridge, normaliser, batch, x1, v, physics_flux="scaled") -> torch.Tensor:
    missing = [k for k in PHYSICS_KEYS if k not in batch]
    if missing:
        raise KeyError(f"use_physics needs batch keys {missing} (build the dataset with with_physics=True)")
    if physics_flux not in PHYSICS_FLUX_MODES:
        raise ValueError(f"physics_flux must be one of {PHYSICS_FLUX_MODES}, got {physics_flux!r}")
    depth_now_m = normaliser.to_metres_depth(bridge.clean_estimate(x1, v))
    flux_x, flux_y = batch["flux_x"], batch["flux_y"]
    if physics_flux == "scaled":
        flux_x, flux_y = depth_scaled_fluxes(depth_now_m, batch["depth"], flux_x, flux_y)
    return physics_loss(depth_now_m, batch["depth_prev"], flux_x, flux_y, batch["rain_mm_per_h"],
                        batch["dx"], batch.get("loss"), scale_m=normaliser.depth_scale, mask=batch.get("valid"))


@torch.no_grad()
def sample(model: PIFFModel, bridge: Bridge, normaliser: Normaliser, elevation: torch.Tensor,
           prior: torch.Tensor | None, rain_window: torch.Tensor, nfe: int = 10, method: str = "euler",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Depth maps in metres (B, 1, H, W), clamped >= 0, from elevation (B, 1, H, W) m, the
    prior map (B, 1, H, W) m (ignored when the model was built with use_prior=False) and the rain
    window (B, 24) mm/h, with exactly ``nfe`` network evaluations. Runs in eval mode; wrap
    in ``ema.swapped_in()`` to sample with the averaged weights."""
    x1 = normaliser.to_model_elevation(elevation)
    prior_model = model.prior_input(normaliser, prior)
    with eval_mode(model):
        context = model.encode_rain(rain_window)
        x0 = bridge.sample(lambda x, t: model.velocity(x, t, x1, prior_model, context), x1, nfe, method, generator)
    return normaliser.to_metres_depth(x0).clamp_min(0)


def build_model(config: ModelConfig) -> PIFFModel | RegressionModel:
    """The network a config describes (``config.kind``: "piff" or "regression")."""
    return PIFFModel(config) if config.kind == "piff" else RegressionModel(config)
