"""Operational prediction: flood-depth maps for any DEM and a rainfall forecast.

:func:`predict_maps` is the whole pipeline behind ``piff predict`` (the CLI only reads files and
writes the result):

1. checks: a projected (metric) DEM whose cell size matches the model's training cell size
   (:func:`check_projected`, :func:`check_cell_size`; :func:`piff.hydro.terrain.resample_terrain` adapts a DEM
   of another cell size);
2. the prior, once per DEM: the SPM fill-and-spill of the whole DEM (water routing is global,
   so it is never computed per tile) looked up per hour from the 24-h window sum, or the coarse
   dynamic prior when the model was trained with ``prior="coarse"`` (:func:`prior_maps`);
3. per hour, tiled inference (:mod:`piff.inference.tiling`) with windows of the training map
   size, ``members`` samples per window, and the per-window statistics blended into
   ``depth_mean``, ``depth_std`` and ``p_exceed`` (:func:`_window_stats`).

Design choices (see also docs/architecture.md):

* **Nodata cells** are filled with the DEM's highest valid elevation before the network, i.e.
  they become walls, as in the solver and the SPM (nodata = closed wall), so water is neither
  drawn into them nor let out through them. Their output is NaN.
* **Resampling** (``--resample``) bilinearly resamples the DEM to the training cell size and the
  maps stay on that resampled grid (same CRS, same top-left corner, training cell size): the
  model only knows depths at its own resolution, and interpolating them back to a finer DEM grid
  would invent detail the prediction does not have.
* **Ensembles**: members of one window are independent samples; overlapping windows are
  independent too. The blended ``depth_mean``, ``depth_std`` and ``p_exceed`` are the mean,
  standard deviation and exceedance probability of the *mixture* of the windows' member sets
  (weights = the blending weights): blending raw member maps instead would average independent
  draws in the overlaps and shrink the spread there, drawing the tile seams into ``depth_std``.
  A deterministic sampler has one member: its blended map is the prediction, with std 0 and
  probabilities 0 or 1.
"""

from __future__ import annotations

import math
import re
import time
import warnings

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from piff.choices import PRIORS, SAMPLERS, STOCHASTIC_SAMPLERS
from piff.data.outputs import prediction_dataset
from piff.errors import PiffInputError
from piff.hydro.storms import rain_window
from piff.hydro.terrain import Terrain
from piff.inference import tiling
from piff.model.trained import TrainedModel, resolve_device
from piff.units import M2_PER_KM2

THRESHOLDS_M = (0.1, 0.3, 0.5)
DEFAULT_BOUNDARY = "left=free,right=free,top=free,bottom=free"
# A DEM cell size within 1 % of the training cell size is the same grid for the model
# (GeoTIFFs often carry 19.9999 m for 20 m).
CELL_SIZE_RTOL = 0.01
DEFAULT_OVERLAP = 0.25
# Elevations more than this many training standard deviations from the training mean are far
# outside what the network saw (e.g. a DEM on another vertical datum): warn.
ELEVATION_WARN_STD = 4.0


# ----------------------------------------------------------------------------- checks
def check_projected(terrain: Terrain, source) -> None:
    """Refuse a DEM in a geographic CRS (cells in degrees): the model works in metres."""
    if not terrain.crs:
        return
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_wkt(terrain.crs)
    except CRSError:
        return  # an unparseable CRS is only carried along to the output
    if crs.is_geographic:
        raise PiffInputError(source, f"DEM is in a geographic CRS ({crs.to_string() or 'degrees'}); "
                                     "reproject it to a projected CRS in metres first (e.g. gdalwarp -t_srs EPSG:...)")


def check_cell_size(model_dx: float, terrain: Terrain, source) -> None:
    """The DEM's cell size must be the training cell size (within CELL_SIZE_RTOL)."""
    if not math.isclose(terrain.dx, model_dx, rel_tol=CELL_SIZE_RTOL):
        raise PiffInputError(source, f"cell size {terrain.dx:g} m differs from the model's training cell size "
                                     f"{model_dx:g} m; resample the DEM (option --resample does it bilinearly)")


def parse_hours(text: str | None, n_hours: int) -> list[int]:
    """``"1-24"``, ``"6,12,18"`` or ``"1-6,12"`` -> sorted unique hours; None -> 1..n_hours."""
    if text is None or not text.strip():
        return list(range(1, n_hours + 1))
    hours = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None or (m[2] is not None and int(m[2]) < int(m[1])):
            raise PiffInputError("--hours", f"expected hours like 1-24 or 6,12,18, got {text!r}")
        hours.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    if min(hours) < 1:
        raise PiffInputError("--hours", f"hours count from 1 (the end of the first rain hour), got {text!r}")
    return sorted(hours)


def check_rain(rain_mm_per_h, hours, source) -> np.ndarray:
    """(T,) intensities [mm/h], finite, >= 0, covering every requested hour."""
    rain = np.asarray(rain_mm_per_h, np.float64)
    if rain.ndim != 1 or rain.size == 0:
        raise PiffInputError(source, f"expected a 1-D hourly hyetograph, got shape {rain.shape}")
    if not np.all(np.isfinite(rain)) or np.any(rain < 0):
        raise PiffInputError(source, "rainfall intensities must be finite and >= 0 mm/h")
    if max(hours) > rain.size:
        raise PiffInputError(source, f"has {rain.size} hourly values but hour {max(hours)} was requested; "
                                     f"give a forecast of at least {max(hours)} hours or fewer --hours")
    return rain


# ----------------------------------------------------------------------------- the network's DEM
def network_elevation(terrain: Terrain) -> np.ndarray:
    """The DEM the network sees: nodata cells at the highest valid elevation (walls; see the
    module docstring), float32 metres."""
    valid = terrain.valid_mask()
    return np.where(valid, terrain.elevation, np.nanmax(terrain.elevation[valid])).astype(np.float32)


# ----------------------------------------------------------------------------- prior
def rain_windows(rain_mm_per_h: np.ndarray, hours) -> np.ndarray:
    """(len(hours), 24) mm/h: the 24 intensities ending at each hour, left-padded with zeros
    (docs/architecture.md)."""
    stored = np.concatenate([[0.0], rain_mm_per_h])  # interval convention: time 0 holds 0
    return np.stack([rain_window(stored, int(h)) for h in hours])


def prior_maps(terrain: Terrain, rain_mm_per_h, hours, *, prior: str = "spm", boundary=DEFAULT_BOUNDARY,
               coarse_factor: int = 4) -> np.ndarray:
    """(len(hours), ny, nx) float32 prior depth [m] for each hour, 0 at nodata.

    ``prior="spm"``: the fill-and-spill map (built once for the DEM, outlets from ``boundary``)
    of the SPM bin of the 24-h window sum; a dry window gives a dry map (as in training).
    ``prior="coarse"``: the coarse dynamic prior (the solver on a ``coarse_factor``-times coarser
    grid, downscaled) at each hour.
    """
    from piff.hydro.boundary import parse_boundaries
    from piff.hydro.spm import FillAndSpill, coarse_dynamic_prior, spm_bin, spm_lookup

    spec = parse_boundaries(boundary)
    valid = terrain.valid_mask()
    out = np.zeros((len(hours),) + terrain.shape, np.float32)
    if prior == "coarse":
        maps = coarse_dynamic_prior(terrain.elevation, terrain.dx, rain_mm_per_h[:max(hours)], spec,
                                    factor=coarse_factor, nodata_mask=~valid if not valid.all() else None)
        out[:] = maps[list(hours)]
    elif prior == "spm":
        sums = rain_windows(rain_mm_per_h, hours).astype(np.float64).sum(axis=1)
        if np.any(sums > 0):  # only the bins these hours need, the map of a dry window stays dry
            fs = FillAndSpill(terrain.elevation, terrain.dx, spec.outlet_mask(terrain.shape), nodata_mask=~valid)
            bins = np.unique(spm_bin(sums[sums > 0]))
            out[:] = spm_lookup(fs.table(bins), sums, bins)
    else:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    return np.where(valid, out, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- the network
class _WindowSampler:
    """Callable for :func:`tiling.predict_tiled`: depth statistics of a batch of windows for a
    group of hours.

    Windows ``{"elevation": (B, th, tw), "prior": (B, G, th, tw)}`` in metres, with ``rain``
    (G, 24) the rain windows of the G hours. Every (window, hour) gets ``members`` depth maps;
    the maps go through the network ``batch_size`` at a time. Returns (B, G, C, th, tw):

    * stochastic sampler, C = 2 + K: the members' mean, mean of squares and, for each of the K
      thresholds, the fraction of members deeper than it. These are linear in the mixture, so
      blending them gives the mixture's moments and probabilities;
    * deterministic, C = 1: the depth map.
    """

    def __init__(self, trained, rain, *, nfe, sampler, members, stochastic, generator, device, batch_size,
                 thresholds):
        self.trained, self.nfe, self.sampler, self.members = trained, nfe, sampler, members
        self.rain = torch.as_tensor(np.asarray(rain), dtype=torch.float32, device=device)
        self.stochastic, self.generator, self.device, self.batch_size = stochastic, generator, device, batch_size
        self.thresholds = np.asarray(thresholds, np.float64)

    def __call__(self, batch: dict) -> np.ndarray:
        n_win, n_hours = batch["prior"].shape[:2]
        m = self.members
        # one row per (window, hour, member), in that order
        elevation = np.repeat(batch["elevation"], n_hours * m, axis=0)
        prior = np.repeat(batch["prior"].reshape((-1,) + batch["prior"].shape[-2:]), m, axis=0)
        hour = np.tile(np.repeat(np.arange(n_hours), m), n_win)
        depth = np.concatenate([self._run(elevation[i:i + self.batch_size], prior[i:i + self.batch_size],
                                          hour[i:i + self.batch_size])
                                for i in range(0, elevation.shape[0], self.batch_size)])
        depth = depth.reshape((n_win, n_hours, m) + depth.shape[-2:]).astype(np.float64)
        if not self.stochastic:
            return depth  # m == 1: the member axis is the single channel
        exceed = (depth[:, :, None] > self.thresholds[:, None, None, None]).mean(axis=3)
        return np.concatenate([depth.mean(axis=2, keepdims=True), (depth ** 2).mean(axis=2, keepdims=True), exceed],
                              axis=2)

    def _run(self, elevation: np.ndarray, prior: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """(n, th, tw) metres and (n,) hour positions -> (n, th, tw) depth [m] from the network."""
        z = torch.as_tensor(elevation[:, None], dtype=torch.float32, device=self.device)
        p = torch.as_tensor(prior[:, None], dtype=torch.float32, device=self.device)
        rain = self.rain[torch.as_tensor(hour, device=self.device)]
        out = self.trained.predict(z, p, rain, nfe=self.nfe, sampler=self.sampler, generator=self.generator)
        return out[:, 0].float().cpu().numpy()


def _hour_generator(seed: int, hour: int, device) -> torch.Generator:
    """A generator per (seed, hour): an hour's members do not depend on which other hours are
    predicted in the same run."""
    state = int(np.random.SeedSequence([int(seed), int(hour)]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(state)


# ----------------------------------------------------------------------------- the pipeline
def predict_maps(trained: TrainedModel, terrain: Terrain, rain_mm_per_h, hours, nfe: int = 10, sampler: str = "euler",
                 members: int = 1, seed: int = 0, device="cpu", batch_size: int = 8, *,
                 boundary=DEFAULT_BOUNDARY, overlap: float = DEFAULT_OVERLAP, tile=None,
                 thresholds=THRESHOLDS_M, coarse_factor: int = 4, elevation_offset_m: float = 0.0,
                 progress: bool = False, source=None) -> xr.Dataset:
    """Flood-depth maps [m] of ``terrain`` for the forecast ``rain_mm_per_h`` at ``hours``.

    trained : a :class:`piff.model.trained.TrainedModel` (``load_trained``).
    terrain : the DEM (projected CRS, cell size = the model's training cell size).
    rain_mm_per_h : (T,) hourly intensities [mm/h], ``rain[j]`` falling during (j, j+1] h.
    hours : hours (1..T) after the storm start at which to predict the (instantaneous) depth.
    nfe : network evaluations per map (PIFF bridge; the regression kind always uses 1).
    sampler : euler | heun | euler_maruyama; only euler_maruyama is stochastic, the others (and
        the regression kind) run one member whatever ``members`` says.
    members : ensemble members per map (stochastic sampler).
    seed : seeds one torch.Generator per hour (reproducible members).
    device : torch device or "auto"; batch_size : maps per network call (windows x members).
    boundary : edge spec (piff.hydro.boundary) giving the prior's outlets; default free outflow
        on every edge (a DEM cut out of a larger area drains across its edges).
    overlap : overlapping fraction of neighbouring windows; tile : window (th, tw), default the
        training map size ``meta["grid_shape"]`` (must be a multiple of the U-Net's size multiple).
    thresholds : depths [m] of the exceedance probabilities.
    coarse_factor : coarsening of the coarse dynamic prior (models trained with prior "coarse").
    elevation_offset_m : metres added to the DEM before the network only (not to the prior), to
        bring a DEM on another vertical datum into the training range.
    source : name of the DEM in error messages (default: ``terrain.name``).

    Returns an xarray Dataset (CF-1.10): ``depth_mean``, ``depth_std`` (time, y, x) [m],
    ``p_exceed`` (time, threshold, y, x) [1], ``prior`` (time, y, x) [m], ``elevation`` (y, x)
    [m], ``rainfall`` and ``rain_window_sum`` (time); NaN at nodata cells.
    """
    t_start = time.perf_counter()
    source = source or terrain.name
    hours = [int(h) for h in hours]
    rain = _check_request(trained, terrain, rain_mm_per_h, hours, nfe, sampler, overlap, source)
    stochastic = trained.kind == "piff" and sampler in STOCHASTIC_SAMPLERS
    members = max(1, int(members)) if stochastic else 1
    tile = _check_tile(trained, tile)
    device = resolve_device(device)

    valid = terrain.valid_mask()
    uses_prior = trained.prior != "none"
    priors = (prior_maps(terrain, rain, hours, prior=trained.prior, boundary=boundary, coarse_factor=coarse_factor)
              if uses_prior else np.zeros((len(hours),) + terrain.shape, np.float32))
    elevation = network_elevation(terrain) + np.float32(elevation_offset_m)
    _warn_elevation_range(trained.normaliser, elevation[valid], source)
    _warn_rain_range(trained, rain, hours)
    windows = rain_windows(rain, hours)
    n_tiles = len(tiling.tile_windows(terrain.shape, tile, overlap))

    # Deterministic: all hours of a window in one network batch (24 maps of a training-size DEM
    # in a few calls). Stochastic: one hour at a time with its own generator, so an hour's members
    # do not depend on which other hours are requested; the members fill the batches.
    groups = [list(range(len(hours)))] if not stochastic else [[k] for k in range(len(hours))]
    stats = []
    with tqdm(total=len(hours) * n_tiles, desc="predict", unit="tile", disable=not progress) as bar:
        for group in groups:
            n_group = len(group)
            fn = _WindowSampler(trained, windows[group], nfe=nfe, sampler=sampler, members=members,
                                stochastic=stochastic, generator=_hour_generator(seed, hours[group[0]], device),
                                device=device, batch_size=batch_size, thresholds=thresholds)
            stats.append(tiling.predict_tiled(fn, {"elevation": elevation, "prior": priors[group]}, tile, overlap,
                                              batch_size=max(1, batch_size // (n_group * members)),
                                              progress=lambda n, g=n_group: bar.update(n * g)))
    mean, std, p = _finish_stats(np.concatenate(stats), thresholds, stochastic)
    nan = ~valid
    mean[:, nan], std[:, nan], p[:, :, nan] = np.nan, np.nan, np.nan

    ds = prediction_dataset(terrain, hours, rain, windows, mean, std, p, priors if uses_prior else None, thresholds)
    ds.attrs.update(_provenance(trained, nfe, sampler, members, seed, device, trained.prior,
                                boundary, coarse_factor, tile, overlap, n_tiles, elevation_offset_m, terrain.dx))
    ds.attrs["wall_time_s"] = time.perf_counter() - t_start
    return ds


def _check_request(trained, terrain, rain_mm_per_h, hours, nfe, sampler, overlap, source) -> np.ndarray:
    """Every check of :func:`predict_maps` that needs no computation; returns the rain array."""
    if not hours or min(hours) < 1:
        raise PiffInputError("hours", f"hours count from 1, got {hours}")
    rain = check_rain(rain_mm_per_h, hours, "rainfall")
    check_projected(terrain, source)
    check_cell_size(trained.cell_size_m, terrain, source)
    if sampler not in SAMPLERS:
        raise PiffInputError("--sampler", f"{sampler!r} is not one of {', '.join(SAMPLERS)}")
    if not (isinstance(nfe, int) and nfe >= 1):
        raise PiffInputError("--nfe", f"must be an integer >= 1, got {nfe!r}")
    if not 0.0 <= overlap < 1.0:
        raise PiffInputError("--overlap", f"must be in [0, 1), got {overlap!r}")
    return rain


def _provenance(trained, nfe, sampler, members, seed, device, prior, boundary, coarse_factor, tile, overlap,
                n_tiles, elevation_offset_m, dx) -> dict:
    """Global attributes saying how the maps were made (netCDF attributes: numbers and strings)."""
    piff = trained.kind == "piff"
    return {
        "model": str(trained.path), "model_fingerprint": str(trained.meta.get("fingerprint", "")),
        "model_kind": trained.kind, "model_step": int(trained.meta.get("step", -1)),
        "nfe": int(nfe if piff else 1), "sampler": sampler if piff else "none", "members": int(members),
        "seed": int(seed), "device": str(device), "prior": prior, "prior_boundary": str(boundary),
        "coarse_factor": int(coarse_factor) if prior == "coarse" else 0,
        "tile": list(tile), "tile_overlap": float(overlap), "tiles_per_hour": int(n_tiles),
        "nodata_fill": "highest valid elevation (nodata cells are walls)",
        "elevation_offset_m": float(elevation_offset_m), "cell_size_m": float(dx),
        "model_cell_size_m": float(trained.cell_size_m),
    }


def _check_tile(trained, tile) -> tuple[int, int]:
    """The window size: the training map size unless given; a multiple of the U-Net's size step."""
    tile = trained.meta["grid_shape"] if tile is None else tile
    tile = (int(tile), int(tile)) if np.ndim(tile) == 0 else (int(tile[0]), int(tile[1]))
    step = trained.model.config.size_multiple
    if tile[0] % step or tile[1] % step or min(tile) < step:
        raise PiffInputError("tile", f"window {tile[0]}x{tile[1]} must be a positive multiple of {step} cells "
                                     "(the U-Net's downsampling)")
    return tile


def _finish_stats(stats: np.ndarray, thresholds, stochastic: bool):
    """Blended (hours, C, ny, nx) statistics of :class:`_WindowSampler` -> mean, std [m] and
    p_exceed (hours, K, ny, nx)."""
    mean = stats[:, 0]
    if stochastic:
        std = np.sqrt(np.maximum(stats[:, 1] - mean ** 2, 0.0))
        p = np.clip(stats[:, 2:], 0.0, 1.0)
    else:
        # one deterministic map: the blended depth is the prediction (window disagreement is
        # tiling error, not forecast uncertainty)
        std = np.zeros_like(mean)
        p = (mean[:, None] > np.asarray(thresholds, np.float64)[None, :, None, None]).astype(np.float64)
    return mean.astype(np.float32), std.astype(np.float32), p.astype(np.float32)


def _warn_rain_range(trained: TrainedModel, rain: np.ndarray, hours) -> None:
    """Warn, naming the hour, when the forecast is more intense than any training hour: the
    network saturates outside its training range (a 10 000 mm/h hour looks like 20 mm/h)."""
    limit = trained.rain_max_mm_per_h
    if limit is None:
        return
    used = rain[: max(hours)]
    if used.max() > limit:
        k = int(np.argmax(used))
        warnings.warn(f"rainfall: hour {k + 1} has {used[k]:g} mm/h, beyond the 0-{limit:g} mm/h range of the storms "
                      f"{trained.path} was trained on; its maps there are extrapolations", stacklevel=3)


def _warn_elevation_range(normaliser, z_valid: np.ndarray, source) -> None:
    """Warn when the DEM sits far outside the training elevations (another vertical datum?)."""
    offset = (float(np.median(z_valid)) - normaliser.elevation_mean) / normaliser.elevation_std
    if abs(offset) > ELEVATION_WARN_STD:
        warnings.warn(f"{source}: median elevation {np.median(z_valid):.1f} m is {offset:+.1f} training standard "
                      f"deviations from the training mean {normaliser.elevation_mean:.1f} m; the network has not "
                      "seen such elevations (consider --match-elevation)", stacklevel=3)


def summary(ds: xr.Dataset, threshold_m: float = 0.3) -> str:
    """One line: flooded area (> threshold_m) at the hour where it peaks, peak depth and where."""
    depth = ds["depth_mean"].values
    dx = float(ds.attrs["cell_size_m"])
    hours = ds["time"].values
    area_km2 = (np.nan_to_num(depth) > threshold_m).sum(axis=(1, 2)) * dx * dx / M2_PER_KM2
    k_area = int(np.argmax(area_km2))
    k, i, j = np.unravel_index(int(np.nanargmax(depth)), depth.shape)
    return (f"flooded area (> {threshold_m:g} m) {area_km2[k_area]:.3f} km2 at hour {hours[k_area]:g} (its peak); "
            f"peak depth {depth[k, i, j]:.2f} m at x={float(ds['x'][j]):.1f}, y={float(ds['y'][i]):.1f}, "
            f"hour {hours[k]:g}; {ds.attrs['wall_time_s']:.1f} s")
