"""Operational prediction: flood-depth maps for any DEM and a rainfall forecast.

:func:`predict_maps` is the whole pipeline behind ``piff predict`` (the CLI only reads files and
writes the result):

1. checks: a projected (metric) DEM whose cell size matches the model's training cell size
   (:func:`check_projected`, :func:`check_cell_size`; :func:`piff.hydro.terrain.resample_terrain` adapts a DEM
   of another cell size);
2. the prior, once per DEM: the SPM fill-and-spill of the whole DEM (water routing is global,
   so it is never computed per tile) looked up per hour from the 24-h window sum, or the coarse
   dynamic prior when the model was trained with ``prior="coarse"`` (:func:`prior_maps`);
3. where the network runs (:func:`inference_plan`): on the whole DEM at once, padded (reflected)
   up to the U-Net's size multiple (and at least the training map size) and cropped back, when
   that fits the memory budget ``MAX_CELLS_PER_CALL`` and the attention budget
   ``MAX_WHOLE_DOMAIN_TOKENS``; otherwise, or when a ``tile`` is given, on overlapping windows
   of the training map size blended into one map (:mod:`piff.inference.tiling`);
4. one pass for all maps: the rain windows are computed once per hour, then every (window,
   hour, member) map goes through the network in calls of as many maps as the memory budget
   allows (``CPU_CELLS_PER_CALL`` on the CPU, where smaller calls are faster), hours and members
   mixed (no loop over hours), in ``torch.inference_mode`` and, on the CPU, with channels_last
   convolutions; each map's statistics are accumulated into ``depth_mean``, ``depth_std`` and
   ``p_exceed`` (:class:`_MapSampler`). The ``inference`` attribute says whole-domain or tiled.

Design choices (see also docs/architecture.md):

* **Nodata cells** are filled with the DEM's highest valid elevation before the network, i.e.
  they become walls, as in the solver and the SPM (nodata = closed wall), so water is neither
  drawn into them nor let out through them. Their output is NaN.
* **Resampling** (``--resample``) bilinearly resamples the DEM to the training cell size and the
  maps stay on that resampled grid (same CRS, same top-left corner, training cell size): the
  model only knows depths at its own resolution, and interpolating them back to a finer DEM grid
  would invent detail the prediction does not have.
* **Ensembles**: every map draws its noise from its own generator, seeded by (seed, hour,
  member, window) (:func:`_map_generator`), so an hour's members do not depend on which other
  hours are requested or on how the maps are batched. Members of one window are independent
  samples; overlapping windows are independent too. The blended ``depth_mean``, ``depth_std``
  and ``p_exceed`` are the mean, standard deviation and exceedance probability of the *mixture*
  of the windows' member sets (weights = the blending weights): blending raw member maps
  instead would average independent draws in the overlaps and shrink the spread there, drawing
  the tile seams into ``depth_std``. A deterministic sampler has one member: its blended map is
  the prediction, with std 0 and probabilities 0 or 1.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from piff.choices import ATTENTION_MODES, DEFAULT_ATTENTION, DEFAULT_PRECISION, PRIORS, SAMPLERS, STOCHASTIC_SAMPLERS
from piff.data.outputs import prediction_dataset
from piff.errors import PiffInputError
from piff.hydro.storms import rain_window
from piff.hydro.terrain import Terrain
from piff.inference import tiling
from piff.model.trained import TrainedModel, inference_dtype, network_precision, resolve_device
from piff.units import M2_PER_KM2

THRESHOLDS_M = (0.1, 0.3, 0.5)
DEFAULT_BOUNDARY = "left=free,right=free,top=free,bottom=free"
# A DEM cell size within 1 % of the training cell size is the same grid for the model
# (GeoTIFFs often carry 19.9999 m for 20 m).
CELL_SIZE_RTOL = 0.01
DEFAULT_OVERLAP = 0.25
# Memory budget of one network call, in map cells x maps: a forward pass holds about 2 KB per
# cell for the tiny preset and 8 KB for the paper preset (peak RSS on the CPU, 512x512 and
# 128x128 maps), so a call stays within about 2 (tiny) to 8 GB (paper).
MAX_CELLS_PER_CALL = 2 ** 20
# On the CPU, calls of more than a few 10^4 cells are slower per cell (the activations leave the
# caches): the tiny preset predicts a 256x256 DEM from 64x64 tiles in 9.5 s in calls of 8 tiles,
# 13.1 s in one call of 100; so CPU calls hold about this many cells.
CPU_CELLS_PER_CALL = 2 ** 16
# Under bf16 autocast on a CPU with AMX, twice that: 24 maps of the demo `phy` model (NFE 2) took
# 15-20 % less in calls of 2^17 cells than of 2^16, at 128 x 128 and at 256 x 256, while in
# float32 on the same CPU 2^16 stayed the fastest (docs/benchmarks.md, "Maps per network call in bf16").
CPU_CELLS_PER_CALL_BF16 = 2 ** 17
# Self-attention's cost grows with the square of its tokens, tiling's linearly (overlaps are
# computed twice): the whole DEM runs at once only while the finest attention site has at most
# this many tokens. The tiny preset (attention at 1/4 resolution) runs a 256x256 map (4096
# tokens) as fast as its 25 overlapping 64x64 tiles, a 512x512 one 1.7x slower (CPU).
MAX_WHOLE_DOMAIN_TOKENS = 4096
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
    from piff.hydro.spm import coarse_dynamic_prior, spm_bin, spm_lookup

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
            fs = _fill_and_spill(terrain.elevation, terrain.dx, spec.outlet_mask(terrain.shape), ~valid)
            bins = np.unique(spm_bin(sums[sums > 0]))
            out[:] = spm_lookup(fs.table(bins), sums, bins)
    else:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    return np.where(valid, out, 0.0).astype(np.float32)


_SPM_CACHE: dict = {}  # the last DEM's fill-and-spill analysis, keyed by the bytes it depends on


def _fill_and_spill(elevation, dx, outlets, nodata):
    """``FillAndSpill(elevation, dx, outlets, nodata_mask=nodata)``, reused while the DEM, cell size,
    outlets and nodata are the same: the analysis (priority flood, depression tree) depends on
    the terrain only and took ~30 ms of a ~0.15-s 256 x 256 map on every call; hashing the
    inputs costs ~1 ms. One entry: an operational run predicts many events on one DEM."""
    digest = hashlib.sha1()
    for a in (np.ascontiguousarray(elevation), np.ascontiguousarray(outlets), np.ascontiguousarray(nodata)):
        digest.update(str((a.dtype, a.shape)).encode())
        digest.update(a.tobytes())
    key = (digest.hexdigest(), float(dx))
    if key not in _SPM_CACHE:
        _SPM_CACHE.clear()
        from piff.hydro.spm import FillAndSpill

        _SPM_CACHE[key] = FillAndSpill(elevation, dx, outlets, nodata_mask=nodata)
    return _SPM_CACHE[key]


# ----------------------------------------------------------------------------- the network
class _MapSampler:
    """Callable for :func:`tiling.predict_whole` and :func:`tiling.predict_tiled`: depth
    statistics of a batch of windows for every requested hour.

    Windows ``{"elevation": (B, th, tw), "prior": (B, G, th, tw)}`` in metres, with ``rain``
    (G, 24) the rain windows of the G hours. Every (window, hour) gets ``members`` depth maps; the
    maps, one per (window, hour, member), go through the network ``maps_per_call`` at a time,
    whatever hour they belong to; a stochastic map draws its noise from its own generator
    (:func:`_map_generator`). Returns (B, G, C, th, tw):

    * stochastic sampler, C = 2 + K: the members' mean, mean of squares and, for each of the K
      thresholds, the fraction of members deeper than it. These are linear in the mixture, so
      blending them gives the mixture's moments and probabilities;
    * deterministic, C = 1: the depth map;
    * ``keep_maps`` (rainfall ensembles, :mod:`piff.inference.ensemble`), C = members: every map.

    ``keys`` (one tuple of integers per group) replace the hours in the maps' seeds.
    """

    def __init__(self, trained, rain, hours, *, nfe, sampler, members, stochastic, seed, device, maps_per_call,
                 thresholds, progress=None, keys=None, keep_maps=False):
        self.trained, self.nfe, self.sampler, self.members = trained, nfe, sampler, members
        self.rain = torch.as_tensor(np.asarray(rain), dtype=torch.float32, device=device)
        self.hours, self.stochastic, self.seed, self.device = list(hours), stochastic, seed, device
        self.maps_per_call, self.progress = maps_per_call, progress
        self.thresholds = np.asarray(thresholds, np.float64)
        self.windows_done = 0  # index of the next batch's first window (the tiling passes them in order)
        # what seeds a group's maps besides (seed, member, window): its hour, or for rainfall
        # ensembles (piff.inference.ensemble) the rain member's key
        self.keys = [(int(h),) for h in self.hours] if keys is None else [tuple(int(v) for v in k) for k in keys]
        # keep_maps: return every member's map (B, G, members, th, tw) instead of the statistics
        self.keep_maps = keep_maps

    def __call__(self, batch: dict) -> np.ndarray:
        n_win, n_hours = batch["prior"].shape[:2]
        z = torch.as_tensor(batch["elevation"], dtype=torch.float32, device=self.device)
        p = torch.as_tensor(batch["prior"], dtype=torch.float32, device=self.device)
        n_channels = self.members if self.keep_maps else 2 + len(self.thresholds) if self.stochastic else 1
        stats = np.zeros((n_win, n_hours, n_channels) + z.shape[-2:], np.float64)
        n_maps = n_win * n_hours * self.members
        for lo in range(0, n_maps, self.maps_per_call):
            win, hour, member = np.unravel_index(np.arange(lo, min(lo + self.maps_per_call, n_maps)),
                                                 (n_win, n_hours, self.members))
            w, h = torch.as_tensor(win, device=self.device), torch.as_tensor(hour, device=self.device)
            out = self.trained.predict(z[w, None], p[w, h, None], self.rain[h], nfe=self.nfe, sampler=self.sampler,
                                       generator=self._generators(win, hour, member))
            # a (window, hour)'s members arrive in order however the maps are split into calls, so
            # its sums do not depend on the split
            depth = out[:, 0].double().cpu().numpy()
            if self.keep_maps:
                stats[win, hour, member] = depth
            else:
                for i, moments in enumerate(self._moments(depth)):
                    stats[win[i], hour[i]] += moments
            if self.progress is not None:
                self.progress(len(win))
        self.windows_done += n_win
        return stats

    def _generators(self, win, hour, member) -> list[torch.Generator] | None:
        if not self.stochastic:
            return None
        return [_map_generator(self.seed, self.keys[h], k, self.windows_done + w, self.device)
                for w, h, k in zip(win, hour, member)]

    def _moments(self, depth: np.ndarray) -> np.ndarray:
        """(n, th, tw) depth maps -> (n, C, th, tw), each map's share of its (window, hour)'s statistics."""
        if not self.stochastic:
            return depth[:, None]
        d = depth[:, None]
        return np.concatenate([d, d ** 2, d > self.thresholds[:, None, None]], axis=1) / self.members


def _map_generator(seed: int, key, member: int, window: int, device) -> torch.Generator:
    """The generator of one map: its samples do not depend on which other maps are predicted in
    the same run or batched with it. ``key``: the hour, or a tuple of integers (its group's key)."""
    key = tuple(int(k) for k in np.atleast_1d(key))
    state = int(np.random.SeedSequence([int(seed), *key, int(member), int(window)]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(state)


@dataclass(frozen=True)
class InferencePlan:
    """How :func:`predict_maps` runs the network over a DEM (:func:`inference_plan`)."""

    whole: bool  # the whole (padded) DEM in one window; else overlapping tiles
    window: tuple[int, int]  # the maps the network sees: the padded DEM or a tile
    maps_per_call: int
    # map cells within which self-attention runs (the training map size), or None: the whole window
    attention_window: tuple[int, int] | None = None
    precision: str = "fp32"  # the network's arithmetic, resolved for the device: "bf16" or "fp32"

    @property
    def mode(self) -> str:
        return "whole-domain" if self.whole else "tiled"

    @property
    def attention(self) -> str:
        """``global`` or ``windows of HxW cells`` (the output's ``attention`` attribute)."""
        if self.attention_window is None:
            return "global"
        return f"windows of {self.attention_window[0]}x{self.attention_window[1]} cells"


def inference_plan(trained: TrainedModel, shape, tile=None, batch_size: int | None = None,
                   device="cpu", attention: str = DEFAULT_ATTENTION,
                   precision: str = DEFAULT_PRECISION) -> InferencePlan:
    """Whole-domain inference when the DEM, padded up to the U-Net's size multiple and at least
    to the training map size (the size the network knows), fits ``MAX_CELLS_PER_CALL`` (and,
    with global attention, ``MAX_WHOLE_DOMAIN_TOKENS``); otherwise tiles of the training map
    size. A ``tile`` forces tiles of that size. ``attention`` (ATTENTION_MODES): ``windows``
    runs self-attention within windows of the training map size on a larger whole domain,
    ``global`` over the whole domain; tiles are never larger than the training maps unless
    ``tile`` says so, and then ``windows`` applies to them too. ``batch_size``: maps per network
    call, default as many as ``MAX_CELLS_PER_CALL`` allows (on the CPU ``CPU_CELLS_PER_CALL``,
    or ``CPU_CELLS_PER_CALL_BF16`` when ``precision`` means bf16 there). ``precision`` is resolved
    for the device here (``auto`` -> ``bf16`` or ``fp32``), once for the whole prediction."""
    if attention not in ATTENTION_MODES:
        raise PiffInputError("--attention", f"{attention!r} is not one of {', '.join(ATTENTION_MODES)}")
    config = trained.model.config
    step = config.size_multiple
    trained_shape = tuple(int(t) for t in trained.meta["grid_shape"])
    whole = False
    if tile is None:
        window = tuple(max(t, -(-int(n) // step) * step) for n, t in zip(shape, trained_shape))
        # the finest attention site (the middle block attends at 1 / step)
        ds = min([d for d in config.attention_ds if d <= step] + [step])
        whole = (window[0] * window[1] <= MAX_CELLS_PER_CALL
                 and (attention == "windows" or (window[0] // ds) * (window[1] // ds) <= MAX_WHOLE_DOMAIN_TOKENS))
    if not whole:
        window = _check_tile(trained, tile)
    precision = "bf16" if inference_dtype(precision, device) is not None else "fp32"
    if batch_size is None:
        cells = MAX_CELLS_PER_CALL
        if torch.device(device).type == "cpu":
            cells = CPU_CELLS_PER_CALL_BF16 if precision == "bf16" else CPU_CELLS_PER_CALL
        batch_size = max(1, cells // (window[0] * window[1]))
    elif int(batch_size) < 1:
        raise PiffInputError("--batch-size", f"must be at least 1, got {batch_size}")
    larger = window[0] > trained_shape[0] or window[1] > trained_shape[1]
    return InferencePlan(whole, window, int(batch_size),
                         trained_shape if attention == "windows" and larger else None, precision)


# ----------------------------------------------------------------------------- the pipeline
def predict_maps(trained: TrainedModel, terrain: Terrain, rain_mm_per_h, hours, nfe: int = 10, sampler: str = "euler",
                 members: int = 1, seed: int = 0, device="cpu", batch_size: int | None = None, *,
                 boundary=DEFAULT_BOUNDARY, overlap: float = DEFAULT_OVERLAP, tile=None,
                 thresholds=THRESHOLDS_M, coarse_factor: int = 4, elevation_offset_m: float = 0.0,
                 attention: str = DEFAULT_ATTENTION, precision: str = DEFAULT_PRECISION, progress: bool = False,
                 source=None) -> xr.Dataset:
    """Flood-depth maps [m] of ``terrain`` for the forecast ``rain_mm_per_h`` at ``hours``.

    trained : a :class:`piff.model.trained.TrainedModel` (``load_trained``).
    terrain : the DEM (projected CRS, cell size = the model's training cell size).
    rain_mm_per_h : (T,) hourly intensities [mm/h], ``rain[j]`` falling during (j, j+1] h.
    hours : hours (1..T) after the storm start at which to predict the (instantaneous) depth.
    nfe : network evaluations per map (PIFF bridge; the regression kind always uses 1).
    sampler : euler | heun | euler_maruyama; only euler_maruyama is stochastic, the others (and
        the regression kind) run one member whatever ``members`` says.
    members : ensemble members per map (stochastic sampler).
    seed : seeds one torch.Generator per map (reproducible members, see :func:`_map_generator`).
    device : torch device or "auto".
    batch_size : maps (windows x hours x members) per network call; default as many as
        ``MAX_CELLS_PER_CALL`` allows (``CPU_CELLS_PER_CALL`` on the CPU).
    boundary : edge spec (piff.hydro.boundary) giving the prior's outlets; default free outflow
        on every edge (a DEM cut out of a larger area drains across its edges).
    overlap : overlapping fraction of neighbouring windows (tiled inference).
    tile : window (th, tw) forcing tiled inference (a multiple of the U-Net's size multiple);
        default: the whole DEM at once when it fits, else tiles of the training map size
        ``meta["grid_shape"]`` (:func:`inference_plan`).
    thresholds : depths [m] of the exceedance probabilities.
    coarse_factor : coarsening of the coarse dynamic prior (models trained with prior "coarse").
    elevation_offset_m : metres added to the DEM before the network only (not to the prior), to
        bring a DEM on another vertical datum into the training range.
    attention : ``windows`` (self-attention within windows of the training map size on a larger
        map) or ``global`` (over the whole map); see :func:`inference_plan`.
    precision : the network's arithmetic, ``auto`` (bf16 autocast where the device computes it
        natively, else float32), ``fp32`` or ``bf16`` (``TrainedModel.inference``).
    source : name of the DEM in error messages (default: ``terrain.name``).

    Returns an xarray Dataset (CF-1.10): ``depth_mean``, ``depth_std`` (time, y, x) [m],
    ``p_exceed`` (time, threshold, y, x) [1], ``prior`` (time, y, x) [m], ``elevation`` (y, x)
    [m], ``rainfall`` and ``rain_window_sum`` (time); NaN at nodata cells. The attributes say
    how the maps were made (``inference``: ``whole-domain`` or ``tiled``).
    """
    t_start = time.perf_counter()
    source = source or terrain.name
    hours = [int(h) for h in hours]
    rain = _check_request(trained, terrain, rain_mm_per_h, hours, nfe, sampler, overlap, source)
    stochastic = trained.kind == "piff" and sampler in STOCHASTIC_SAMPLERS
    members = max(1, int(members)) if stochastic else 1
    device = resolve_device(device)
    plan = inference_plan(trained, terrain.shape, tile, batch_size, device, attention, precision)

    valid = terrain.valid_mask()
    uses_prior = trained.prior != "none"
    priors = (prior_maps(terrain, rain, hours, prior=trained.prior, boundary=boundary, coarse_factor=coarse_factor)
              if uses_prior else np.zeros((len(hours),) + terrain.shape, np.float32))
    elevation = network_elevation(terrain) + np.float32(elevation_offset_m)
    _warn_elevation_range(trained.normaliser, elevation[valid], source)
    _warn_rain_range(trained, rain, hours)
    windows = rain_windows(rain, hours)
    fields = {"elevation": elevation, "prior": priors}
    n_tiles = 1 if plan.whole else len(tiling.tile_windows(terrain.shape, plan.window, overlap))

    with (tqdm(total=n_tiles * len(hours) * members, desc="predict", unit="map", disable=not progress) as bar,
          trained.inference(plan.attention_window, plan.precision)):
        fn = _MapSampler(trained, windows, hours, nfe=nfe, sampler=sampler, members=members, stochastic=stochastic,
                         seed=seed, device=device, maps_per_call=plan.maps_per_call, thresholds=thresholds,
                         progress=bar.update)
        if plan.whole:
            stats = tiling.predict_whole(fn, fields, plan.window)
        else:  # enough windows per call of fn to fill the network calls with all their hours and members
            stats = tiling.predict_tiled(fn, fields, plan.window, overlap,
                                         batch_size=max(1, plan.maps_per_call // (len(hours) * members)))
    mean, std, p = _finish_stats(stats, thresholds, stochastic)
    nan = ~valid
    mean[:, nan], std[:, nan], p[:, :, nan] = np.nan, np.nan, np.nan

    ds = prediction_dataset(terrain, hours, rain, windows, mean, std, p, priors if uses_prior else None, thresholds)
    ds.attrs.update(_provenance(trained, nfe, sampler, members, seed, device, trained.prior,
                                boundary, coarse_factor, plan, overlap, n_tiles, elevation_offset_m, terrain.dx))
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


def _provenance(trained, nfe, sampler, members, seed, device, prior, boundary, coarse_factor, plan, overlap,
                n_tiles, elevation_offset_m, dx) -> dict:
    """Global attributes saying how the maps were made (netCDF attributes: numbers and strings)."""
    piff = trained.kind == "piff"
    return {
        "model": str(trained.path), "model_fingerprint": str(trained.meta.get("fingerprint", "")),
        "model_kind": trained.kind, "model_step": int(trained.meta.get("step", -1)),
        "nfe": int(nfe if piff else 1), "sampler": sampler if piff else "none", "members": int(members),
        "seed": int(seed), "device": str(device), "precision": network_precision(plan.precision, device),
        "prior": prior, "prior_boundary": str(boundary),
        "coarse_factor": int(coarse_factor) if prior == "coarse" else 0,
        "inference": plan.mode, "attention": plan.attention, "tile": list(plan.window),
        "tile_overlap": 0.0 if plan.whole else float(overlap),
        "tiles_per_hour": int(n_tiles), "maps_per_call": int(plan.maps_per_call),
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
    """Blended (hours, C, ny, nx) statistics of :class:`_MapSampler` -> mean, std [m] and
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
            f"hour {hours[k]:g}; NFE {ds.attrs['nfe']}; {ds.attrs['wall_time_s']:.1f} s")
