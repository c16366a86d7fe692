"""Transforms between physical metres and model space: the only place they are defined.

Model space:

* elevation: ``(z - elevation_mean) / elevation_std``, standardised over the training DEMs
  (the "norm" of the paper's experiment names), so x1 has mean 0 and spread ~ +-2.
* depth (and the SPM prior, which is a depth): ``depth / depth_scale``. Linear with **no
  offset**, on purpose:

  - a dry cell is exactly 0 in both spaces, so "clamp depth >= 0" is the same in either;
  - metres <-> model is a constant factor, so the physics loss (computed in metres) has a
    plain, differentiable gradient and an error of e metres is always e / depth_scale units;
  - ``depth_scale = quantile(depth, 0.999) / DEEP_TAIL_TARGET`` puts the deep tail (the
    deepest 0.1 % of training cells) at about +2, the same reach as the standardised DEM,
    so x0 and x1 live on comparable ranges and the velocity x1 - x0 is not dominated by
    either end. A high quantile rather than the std (the std is set by the mostly dry
    cells and would stretch the tail to tens of units) or the max (one outlier cell).

Nothing else in piff may hard-code a normalisation constant: build a ``Normaliser`` with
``fit`` on the training split and save ``state_dict()`` with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from piff.errors import PiffInputError

# The standardised DEM reaches about +-2; map the deep-depth tail to the same reach.
DEEP_TAIL_TARGET = 2.0
DEEP_TAIL_QUANTILE = 0.999
# Floor for the depth scale (m) so an all-dry training split still gives a finite transform.
MIN_DEPTH_SCALE_M = 0.01
# Floor for the elevation std (m): a flat test DEM is legal.
MIN_ELEVATION_STD_M = 0.01
# Above this many values, ``fit`` estimates the statistics on an evenly strided subsample.
MAX_FIT_VALUES = 20_000_000
STATE_VERSION = 1


@dataclass(frozen=True)
class Normaliser:
    """Affine maps metres <-> model space (see module docstring). All methods accept numpy
    arrays or torch tensors of any shape and are differentiable for tensors."""

    elevation_mean: float
    elevation_std: float
    depth_scale: float

    @classmethod
    def fit(cls, depth, elevation) -> Normaliser:
        """Statistics from training-split arrays: ``depth`` (any shape, m, every map/hour of
        the training storms) and ``elevation`` (any shape, m, the training DEMs)."""
        d = _flat_sample(depth)
        z = _flat_sample(elevation)
        if d.size == 0 or z.size == 0:
            raise PiffInputError("normaliser", "cannot fit on empty depth or elevation arrays")
        if not (np.isfinite(d).all() and np.isfinite(z).all()):
            raise PiffInputError("normaliser", "depth and elevation must be finite to fit the normalisation")
        scale = max(float(np.quantile(np.maximum(d, 0.0), DEEP_TAIL_QUANTILE)) / DEEP_TAIL_TARGET, MIN_DEPTH_SCALE_M)
        return cls(elevation_mean=float(z.mean()), elevation_std=max(float(z.std()), MIN_ELEVATION_STD_M),
                   depth_scale=scale)

    # --- depth (and SPM, a depth) ---
    def to_model_depth(self, depth_m):
        return depth_m / self.depth_scale

    def to_metres_depth(self, depth_model):
        return depth_model * self.depth_scale

    # The prior (SPM or coarse) is a depth map and shares the depth transform.
    to_model_prior = to_model_depth
    to_metres_prior = to_metres_depth

    # --- elevation ---
    def to_model_elevation(self, elevation_m):
        return (elevation_m - self.elevation_mean) / self.elevation_std

    def to_metres_elevation(self, elevation_model):
        return elevation_model * self.elevation_std + self.elevation_mean

    # --- persistence ---
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "elevation_mean": self.elevation_mean,
                "elevation_std": self.elevation_std, "depth_scale": self.depth_scale}

    @classmethod
    def from_state_dict(cls, state: dict) -> Normaliser:
        if state.get("version") != STATE_VERSION:
            raise PiffInputError("normaliser", f"unsupported normaliser state version {state.get('version')!r}")
        return cls(float(state["elevation_mean"]), float(state["elevation_std"]), float(state["depth_scale"]))


def _flat_sample(a) -> np.ndarray:
    """Flattened float64 numpy copy of ``a``, strided down to at most MAX_FIT_VALUES values."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a).reshape(-1)
    step = max(1, -(-a.size // MAX_FIT_VALUES))
    return a[::step].astype(np.float64)
