"""What is trained: the network, its EMA, the bridge and the normaliser, behind one small
interface used by the training loop (``train.py``); ``piff.model.trained.load_trained`` reads
back what :meth:`Objective.export` and :meth:`Objective.metadata` write.

Keeping this apart from the loop means the loop never needs to know whether it trains the
PIFF bridge or the U-Net regression baseline.
"""

from __future__ import annotations

import torch

from piff.model import EMA, Bridge, ModelConfig, Normaliser, build_model, regression_loss, training_loss
from piff.training.config import ExperimentConfig


class Objective:
    def __init__(self, cfg: ExperimentConfig, train_data=None, *, normaliser_state: dict | None = None,
                 model_config: dict | None = None, device="cpu"):
        self.cfg = cfg
        if normaliser_state is not None:
            self.normaliser = Normaliser.from_state_dict(normaliser_state)
        elif train_data is not None:
            depth, elevation = train_data.normaliser_arrays()
            self.normaliser = Normaliser.fit(depth, elevation)
        else:
            raise ValueError("Objective needs training data or a saved normaliser")
        kind = "piff" if cfg.type == "piff" else "regression"
        self.model_config = (ModelConfig.from_dict(model_config) if model_config is not None
                             else ModelConfig.from_preset(cfg.model, kind=kind, use_prior=cfg.use_prior))
        self.model = build_model(self.model_config).to(device)
        self.bridge = Bridge(cfg.noise, cfg.sigma, prediction=cfg.prediction, prior_residual=cfg.prior_residual,
                             time_sampling=cfg.time_sampling, anchor_share=cfg.anchor_share)
        self.ema = EMA(self.model, cfg.ema_decay)
        self._ddp = self.model

    # --- training ---
    def optimizer(self) -> torch.optim.Optimizer:
        """AdamW; the rainfall encoder has its own learning rate (PIFF: 1e-4 vs 5e-5)."""
        groups = [{"params": list(self.model.net.parameters()), "lr": self.cfg.lr},
                  {"params": list(self.model.rain_encoder.parameters()), "lr": self.cfg.rain_encoder_lr}]
        return torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)

    def wrap_ddp(self, d):
        """The module the loss calls: DDP (gradient all-reduce in backward) when distributed."""
        if d.enabled:
            ids = [d.device.index] if d.device.type == "cuda" else None
            self._ddp = _DDP(self.model, device_ids=ids)
        return self._ddp

    def loss(self, model, batch: dict, generator: torch.Generator):
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.cfg.amp and batch["depth"].is_cuda else _null()
        with amp:
            if self.cfg.type == "regression":
                return regression_loss(model, self.normaliser, batch)
            return training_loss(model, self.bridge, self.normaliser, batch, use_physics=self.cfg.use_physics,
                                 physics_weight=self.cfg.physics_weight, generator=generator,
                                 physics_flux=self.cfg.physics_flux, physics_norm=self.cfg.physics_norm,
                                 depth_loss=self.cfg.depth_loss,
                                 depth_loss_weight=self.cfg.depth_loss_weight,
                                 velocity_loss_weight=self.cfg.velocity_loss_weight)

    def parameters(self):
        return self.model.parameters()

    def update_ema(self) -> None:
        self.ema.update()

    # --- persistence ---
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "model_config": self.model_config.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])

    def export(self) -> dict:
        """The PIFF-style keys of model.pt: net (U-Net), embedding (rainfall encoder), ema."""
        return {"net": self.model.net.state_dict(), "embedding": self.model.rain_encoder.state_dict(),
                "ema": self.ema.state_dict()}

    def metadata(self) -> dict:
        return {"model_config": self.model_config.to_dict(), "normaliser": self.normaliser.state_dict(),
                "kind": self.model_config.kind, "bridge": self.bridge.to_dict()}


class _DDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that also exposes the helper the losses call besides forward (no parameters used)."""

    def prior_input(self, normaliser, spm_m):
        return self.module.prior_input(normaliser, spm_m)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
