"""U-Net regression baseline: same backbone and conditioning as PIFF, one shot, L1 loss.

Inputs [DEM, prior] (model space) and rain cross-attention; the output is the depth in model
space directly. The U-Net's time input is held at t = 0 (a constant FiLM embedding), so the
architecture and parameter count match the bridge's network except for one input channel.
"""

from __future__ import annotations

import torch

from piff.model.config import ModelConfig
from piff.model.networks import ConditionedNet, eval_mode
from piff.model.normalise import Normaliser


class RegressionModel(ConditionedNet):
    def __init__(self, config: ModelConfig):
        if config.kind != "regression":
            raise ValueError(f"RegressionModel needs a config of kind 'regression', got {config.kind!r}")
        super().__init__(config)

    def forward(self, elevation_model: torch.Tensor, prior_model: torch.Tensor | None,
                rain_window_mm_per_h: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) model-space DEM and prior, (B, 24) mm/h -> (B, 1, H, W) model-space depth."""
        t = torch.zeros(elevation_model.shape[0], device=elevation_model.device)
        return self.run([elevation_model], prior_model, t, self.encode_rain(rain_window_mm_per_h))


def regression_loss(model: RegressionModel, normaliser: Normaliser, batch: dict) -> tuple[torch.Tensor, dict]:
    """L1 between predicted and true depth in model space (= L1 in metres / depth_scale)."""
    pred = model(normaliser.to_model_elevation(batch["elevation"]), model.prior_input(normaliser, batch["prior"]),
                 batch["rain_window"])
    loss = (pred - normaliser.to_model_depth(batch["depth"])).abs().mean()
    return loss, {"l1": loss.detach(), "loss": loss.detach()}


@torch.no_grad()
def regress(model: RegressionModel, normaliser: Normaliser, elevation: torch.Tensor, prior: torch.Tensor | None,
            rain_window: torch.Tensor) -> torch.Tensor:
    """Depth (B, 1, H, W) in metres, clamped >= 0; arguments in physical units (m, mm/h)."""
    with eval_mode(model):
        pred = model(normaliser.to_model_elevation(elevation), model.prior_input(normaliser, prior), rain_window)
    return normaliser.to_metres_depth(pred).clamp_min(0)
