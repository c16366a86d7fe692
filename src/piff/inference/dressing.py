"""Model-error dressing of emulator ensembles (issue 15; docs/ensemble.md, "Error dressing").

An emulator driven by rainfall-forecast members spreads only as far as the rain does: its own
error (about 1 cm a map on the demo) is left out, so its ensemble is too sure of itself
(spread-skill ratio ~0.5). Dressing puts that error back, as forecasters do for a deterministic
model run inside an ensemble (kernel or "best-member" dressing, Roulston and Smith 2003; here
the kernel is the model's own error distribution, conditional on the predicted depth):

1. :func:`fit`: the model predicts maps it never trained on and whose truth is known: the
   dataset's *validation* storms, never the test storms the verification scores. Cells are binned
   by predicted depth (``DEPTH_EDGES_M``); per bin the quantiles of the residual
   ``truth - prediction`` at ``LEVELS`` are kept, with the bin's median prediction as its node.
2. :meth:`ErrorDressing.apply`: every member map ``d`` becomes K maps
   ``d_k = max(0, d + r(d, u_k))``, ``u_k = (k + 1/2) / K``, where ``r`` is linear in the
   predicted depth between the nodes (constant beyond the end ones) and linear in ``u`` between
   levels. The same ``u_k`` holds in every cell and hour, so dressed member k is one coherent
   "wetter (or drier) than predicted" scenario, and the horizon products ("ever exceeds", the
   arrival time) read along it stay consistent; per-cell scores see only the marginals.

The dressing belongs to one trained model at one NFE and sampler: the workflow writes it beside
the model (``results/<name>/error_dressing.nc``, rule ``error_dressing``), and ``piff predict
--dressing K`` reads it from there. Residuals come from the training DEMs' terrain; on terrain
the model never saw its error is larger (docs/benchmarks.md), so the dressing there is a lower
bound on the spread it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from piff import __version__, cf
from piff.errors import PiffInputError

DRESSING_FILE = "error_dressing.nc"  # beside results/<name>/model.pt
# Bins of the predicted depth [m]: fine where most cells are (nearly dry to 10 cm), coarse above.
DEPTH_EDGES_M = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, np.inf)
LEVELS = tuple((np.arange(100) + 0.5) / 100)  # residual quantile levels kept per bin
MIN_CELLS = 200  # a bin with fewer fitted cells has too noisy tails: it is left out (interpolated over)


@dataclass
class ErrorDressing:
    """Residual quantiles [m] (bin, level) of one model, with each bin's node (median predicted
    depth [m]), edges and cell count; ``attrs``: what it was fitted on (model, NFE, sampler, data)."""

    node_m: np.ndarray
    levels: np.ndarray
    residual_m: np.ndarray
    cells: np.ndarray
    bin_low_m: np.ndarray
    bin_high_m: np.ndarray
    attrs: dict = field(default_factory=dict)

    def residual(self, depth, u: float) -> np.ndarray:
        """The residual [m] at quantile level ``u`` for predicted depths ``depth`` [m]."""
        used = self.cells >= MIN_CELLS
        at_u = np.array([np.interp(u, self.levels, q) for q in self.residual_m[used]])
        return np.interp(depth, self.node_m[used], at_u).astype(np.float32)

    def apply(self, maps, k: int) -> np.ndarray:
        """``k`` dressed maps per input map: (k,) + maps.shape [m]; NaN (nodata) stays NaN."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        d = np.asarray(maps, np.float32)
        return np.stack([np.maximum(d + self.residual(d, (j + 0.5) / k), 0.0) for j in range(k)])

    def to_dataset(self) -> xr.Dataset:
        return xr.Dataset(
            {"residual_quantile": (("bin", "level"), self.residual_m.astype(np.float32),
                                   {"units": "m", "long_name": "quantile of the residual truth - prediction"}),
             "node_depth": ("bin", self.node_m.astype(np.float32),
                            {"units": "m", "long_name": "median predicted depth of the bin's cells"}),
             "bin_low": ("bin", self.bin_low_m.astype(np.float32), {"units": "m", "long_name": "bin's lowest "
                                                                                              "predicted depth"}),
             "bin_high": ("bin", self.bin_high_m.astype(np.float32),
                          {"units": "m", "long_name": "bin's highest predicted depth (exclusive)"}),
             "cells": ("bin", self.cells.astype(np.int64), {"units": "1", "long_name": "cells fitted in the bin"})},
            coords={"level": ("level", self.levels.astype(np.float64),
                              {"units": "1", "long_name": "quantile level of the residual"})},
            attrs={"Conventions": cf.CONVENTIONS, "title": "piff model-error dressing",
                   "source": f"piff {__version__} inference.dressing", "min_cells": MIN_CELLS, **self.attrs})

    def write(self, path) -> Path:
        return cf.write_netcdf(self.to_dataset(), path)


def fit(prediction, truth, valid=None, attrs: dict | None = None) -> ErrorDressing:
    """The dressing of predictions against their truth, both [m] of the same shape (NaN or
    ``valid`` False cells left out)."""
    p = np.asarray(prediction, np.float64)
    t = np.asarray(truth, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    keep = np.isfinite(p) & np.isfinite(t)
    if valid is not None:
        keep &= np.broadcast_to(np.asarray(valid, bool), p.shape)
    p, t = p[keep], t[keep]
    edges = np.asarray(DEPTH_EDGES_M)
    which = np.clip(np.searchsorted(edges, np.maximum(p, 0.0), side="right") - 1, 0, len(edges) - 2)
    levels = np.asarray(LEVELS)
    n_bins = len(edges) - 1
    node, residual = np.full(n_bins, np.nan), np.zeros((n_bins, len(levels)))
    cells = np.bincount(which, minlength=n_bins)
    for b in range(n_bins):
        if cells[b]:
            node[b] = np.median(p[which == b])
            residual[b] = np.quantile(t[which == b] - p[which == b], levels)
    if not (cells >= MIN_CELLS).any():
        raise ValueError(f"no depth bin holds {MIN_CELLS} cells ({int(keep.sum())} cells in all): too few to fit")
    return ErrorDressing(np.nan_to_num(node), levels, residual, cells, edges[:-1], edges[1:],
                         {"cells_fitted": int(keep.sum()), "mae_m": float(np.abs(t - p).mean()), **(attrs or {})})


def read(path, *, fingerprint: str | None = None) -> ErrorDressing:
    """A dressing file; with ``fingerprint``, refused unless it was fitted for that model."""
    if not Path(path).is_file():
        raise PiffInputError(path, "no dressing file: the workflow fits one beside the model (rule error_dressing, "
                                   "e.g. snakemake results/phy/error_dressing.nc)")
    try:
        ds = xr.load_dataset(path)
    except (OSError, ValueError) as err:
        raise PiffInputError(path, f"not a readable dressing file ({err.__class__.__name__})") from None
    missing = [v for v in ("residual_quantile", "node_depth", "bin_low", "bin_high", "cells") if v not in ds]
    if missing:
        raise PiffInputError(path, f"not a piff dressing file: no {', '.join(missing)}")
    if fingerprint is not None and ds.attrs.get("model_fingerprint") != fingerprint:
        raise PiffInputError(path, f"fitted for another model (fingerprint {ds.attrs.get('model_fingerprint')}, "
                                   f"this model {fingerprint}): refit it with the workflow's error_dressing rule")
    return ErrorDressing(ds["node_depth"].values.astype(np.float64), ds["level"].values,
                         ds["residual_quantile"].values.astype(np.float64), ds["cells"].values,
                         ds["bin_low"].values, ds["bin_high"].values,
                         {k: v for k, v in ds.attrs.items() if k not in ("Conventions", "title", "source",
                                                                          "min_cells")})


def beside(model_path) -> Path:
    """Where the workflow keeps a model's dressing."""
    return Path(model_path).with_name(DRESSING_FILE)


def fit_on_validation(model_path, dataset_path, *, kind: str, nfe: int, sampler: str = "euler", seed: int = 0,
                      device="cpu", batch_size: int = 32) -> ErrorDressing:
    """Fit a trained model's dressing on the dataset's validation storms (every hour, the training
    DEMs), predicted at ``nfe`` with ``sampler`` (one sample per map). ``kind``: the model's
    (``TrainedModel.kind``), which the caller has loaded already."""
    from piff.data import format as fmt
    from piff.inference.sampling import sample_test_set

    with fmt.open_dataset(dataset_path) as ds:
        if not len(fmt.storm_ids_in_split(ds, "val")):
            raise PiffInputError(dataset_path, "has no validation storms to fit the dressing on (its split sets "
                                               "no val_shapes, val_totals_mm or val_ids)")
        pred = sample_test_set(dataset_path, kind=kind, model_path=model_path, nfe=(nfe,),
                               sampler=sampler, seed=seed, batch_size=batch_size, device=device, split="val")
        truth = ds["depth"].sel(dem=pred["dem"].values, storm=pred["storm"].values, time=pred["time"].values).values
        nodata = (ds["nodata"].sel(dem=pred["dem"].values).values.astype(bool) if "nodata" in ds
                  else np.zeros((pred.sizes["dem"],) + truth.shape[-2:], bool))
    attrs = {"model": str(model_path), "model_fingerprint": pred.attrs["model_fingerprint"],
             "model_kind": kind, "nfe": int(pred["nfe"].values[0]), "sampler": sampler if kind == "piff" else "",
             "dataset": str(dataset_path), "dataset_sha256": pred.attrs["dataset_sha256"], "split": "val",
             "maps": int(np.prod(truth.shape[:3])),
             "storms": " ".join(str(int(s)) for s in pred["storm"].values),
             "dems": " ".join(str(int(d)) for d in pred["dem"].values)}
    valid = ~nodata[:, None, None]  # (dem, 1, 1, y, x) against (dem, storm, time, y, x)
    return fit(pred["depth"].values[0, 0], truth, valid, attrs)
