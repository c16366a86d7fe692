"""Exponential moving average of a module's trained parameters (used for sampling)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

DEFAULT_DECAY = 0.999


class EMA:
    """shadow <- decay * shadow + (1 - decay) * param after every optimiser step.

    Tracks every parameter of ``module`` that requires grad (pass the top-level model so the
    U-Net and the rainfall encoder are both covered). Buffers are not averaged (the networks
    have none that train). Create it after moving the model to its device: the shadow copies
    live where the parameters were at construction.
    """

    def __init__(self, module: nn.Module, decay: float = DEFAULT_DECAY):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.module, self.decay, self.num_updates = module, decay, 0
        self.shadow = {n: p.detach().clone() for n, p in self._params()}

    def _params(self):
        return ((n, p) for n, p in self.module.named_parameters() if p.requires_grad)

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self._params():
            self.shadow[name].lerp_(p.detach(), 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module | None = None) -> None:
        """Write the averaged weights into ``module`` (default: the tracked one)."""
        params = dict((module or self.module).named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value)

    @contextmanager
    def swapped_in(self):
        """Use the averaged weights inside the block; the trained ones come back on exit."""
        backup = {n: p.detach().clone() for n, p in self._params()}
        self.copy_to()
        try:
            yield self.module
        finally:
            with torch.no_grad():
                for name, p in self._params():
                    p.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {n: v.clone() for n, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError("EMA state does not match the model's parameters")
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
