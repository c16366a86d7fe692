"""Preprocessing steps of the dataset workflow: terrain -> storms -> simulate -> SPM -> assemble.

Each function takes plain configuration dicts (the validated ``datasets.<name>`` section of
``config/config.yaml``) and file paths, and returns an ``xarray.Dataset`` in the layout of
:mod:`piff.data.format`. The Snakemake scripts in ``workflow/scripts/`` only call these.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import xarray as xr

from piff import __version__
from piff.data import format as fmt
from piff.errors import PiffInputError
from piff.hydro.continuity import water_balance_residual_m

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- terrain
def dem_source(terrain_cfg: dict, index: int) -> tuple[str, int]:
    """(source, index within that source) of DEM ``index``: the ``source`` DEMs come first, then
    the ``real_windows`` jacksboro windows (real terrain mixed into a synthetic dataset)."""
    if index < _source_count(terrain_cfg):
        return terrain_cfg["source"], index
    return "real_window", index - _source_count(terrain_cfg)


def _source_count(terrain_cfg: dict) -> int:
    return len(terrain_cfg["files"]) if terrain_cfg["source"] == "files" else int(terrain_cfg.get("count", 1))


def dem_count(terrain_cfg: dict) -> int:
    """Number of DEMs of a dataset: the source's DEMs plus the real-terrain windows."""
    return _source_count(terrain_cfg) + int(terrain_cfg.get("real_windows", 0))


def make_terrain(terrain_cfg: dict, index: int):
    """The ``index``-th DEM of a dataset as a :class:`piff.hydro.terrain.Terrain`."""
    from piff.hydro import terrain as T

    source, k = dem_source(terrain_cfg, index)
    size = terrain_cfg.get("size", 64)
    dx = float(terrain_cfg.get("cell_size_m", 20.0))
    if source == "synthetic":
        ter = T.synthetic_lowland(size=size, dx=dx, seed=int(terrain_cfg.get("seed", 0)) + k,
                                  sea_edge=terrain_cfg.get("sea_edge", "left"))
    elif source == "jacksboro":
        ter = T.jacksboro(size=size, dx=dx, relief_m=terrain_cfg.get("relief_m"), offset=k)
    elif source == "real_window":
        # windows spread over the whole DEM, so that no two (a training and a test DEM) overlap
        ter = T.jacksboro(size=size, dx=dx, relief_m=terrain_cfg.get("relief_m"), offset=k,
                          spread=int(terrain_cfg["real_windows"]))
    elif source == "files":
        ter = T.read_dem(terrain_cfg["files"][k], dx=terrain_cfg.get("cell_size_m"))
    else:
        raise PiffInputError("config", f"unknown terrain source {source!r}")
    ter.name = Path(terrain_cfg["files"][k]).stem if source == "files" else (
        f"jacksboro_window_{k:03d}" if source == "real_window" else f"{source}_{k:03d}")
    return ter


def dem_splits(dataset_cfg: dict) -> list[str]:
    """Per DEM, ``train`` (terrain seen in training) or ``test`` (held-out terrain, ``split.test_dems``).
    Decided here, once, and stored in the dataset like the storm split."""
    n = dem_count(dataset_cfg["terrain"])
    test = [int(d) for d in dataset_cfg.get("split", {}).get("test_dems", [])]
    bad = [d for d in test if not 0 <= d < n]
    if bad:
        raise PiffInputError("config", f"split.test_dems {bad} are not DEM indices of this dataset (0..{n - 1})")
    if len(set(test)) >= n:
        raise PiffInputError("config", "split.test_dems holds out every DEM; training needs at least one")
    return ["test" if d in test else "train" for d in range(n)]


def boundary_string(dataset_cfg: dict, dem: int) -> str:
    """The solver boundary spec of DEM ``dem`` of a dataset: explicit in the config, or ``auto``:
    for synthetic terrain a sea of stage ``sea_level_m`` at its sea edge and closed walls
    elsewhere; for real terrain (jacksboro, real windows, files) free outflow on every edge, since
    water leaves a cropped DEM."""
    spec = dataset_cfg.get("boundaries", "auto")
    if spec != "auto":
        return spec
    tcfg = dataset_cfg["terrain"]
    if dem_source(tcfg, dem)[0] == "synthetic":
        edge = tcfg.get("sea_edge", "left")
        closed = ",".join(f"{e}=closed" for e in ("left", "right", "top", "bottom") if e != edge)
        return f"{edge}=sea:{float(dataset_cfg.get('sea_level_m', 0.0))},{closed}"
    return "left=free,right=free,top=free,bottom=free"


# ----------------------------------------------------------------------------- storms
def make_storms(storms_cfg: dict, split_cfg: dict) -> xr.Dataset:
    """The storm table: hyetographs (storm, time), shape, group, total and the split labels.

    The split is decided here, once, and stored; training and evaluation only read it.
    """
    from piff.hydro import storms as S

    storms = S.scenario_grid(totals=storms_cfg["totals_mm"], shapes=storms_cfg["shapes"],
                             hours=int(storms_cfg.get("hours", 24)),
                             cap_mm_per_h=float(storms_cfg.get("cap_mm_per_h", 150.0)),
                             seed=int(storms_cfg.get("seed", 0)))
    hours = int(storms_cfg.get("hours", 24))
    rain = np.zeros((len(storms), hours + 1), np.float32)
    for i, s in enumerate(storms):
        rain[i, 1:] = s.rain_mm_per_h
    ds = xr.Dataset(coords={"storm": ("storm", np.array([s.storm_id for s in storms], np.int32),
                                      {"long_name": "storm id"}),
                            "time": ("time", np.arange(hours + 1, dtype=np.int32),
                                     {"units": "h", "long_name": "hours since storm start"})})
    fmt.add_variable(ds, "rainfall", rain)
    fmt.add_variable(ds, "storm_shape", np.array([s.shape for s in storms]))
    fmt.add_variable(ds, "storm_group", np.array([s.group for s in storms]))
    fmt.add_variable(ds, "storm_total", np.array([s.total_mm for s in storms], np.float32))
    fmt.add_variable(ds, "split", np.array(assign_splits(storms, split_cfg)))
    ds.attrs.update({"Conventions": fmt.CONVENTIONS, "source": f"piff {__version__}"})
    return ds


def storm_splits(dataset_cfg: dict) -> list[str]:
    """The split label of each storm of a dataset's grid (shapes x totals), by the same rule as the
    stored split (:func:`assign_splits`) but without making the hyetographs: for config checks."""
    from types import SimpleNamespace

    storms_cfg = dataset_cfg["storms"]
    grid = [SimpleNamespace(shape=shape, total_mm=float(total))
            for shape in storms_cfg["shapes"] for total in storms_cfg["totals_mm"]]
    return assign_splits(grid, dataset_cfg.get("split", {}))


def storm_list(table: xr.Dataset):
    """The storm table back as a list of :class:`piff.hydro.storms.Storm` (e.g. to write PIFF's csv)."""
    from piff.hydro.storms import Storm

    return [Storm(int(table["storm"][i]), str(table["storm_shape"][i].values), str(table["storm_group"][i].values),
                  float(table["storm_total"][i]), table["rainfall"].values[i, 1:])
            for i in range(table.sizes["storm"])]


def assign_splits(storms, split_cfg: dict) -> list[str]:
    """test: any storm of a held-out shape or a held-out total; val: any other storm of a
    validation shape or total; the rest train."""
    test_shapes = set(split_cfg.get("test_shapes", []))
    val_shapes = set(split_cfg.get("val_shapes", []))
    test_totals = np.asarray(split_cfg.get("test_totals_mm", []), float)
    val_totals = np.asarray(split_cfg.get("val_totals_mm", []), float)
    known_shapes = {s.shape for s in storms}
    unknown = (test_shapes | val_shapes) - known_shapes
    if unknown:
        raise PiffInputError("config",
                             f"split.test_shapes/val_shapes name shapes not in the storm grid: {sorted(unknown)}")

    def has(totals, value):
        return bool(np.any(np.isclose(totals, value, rtol=1e-6)))

    labels = []
    for s in storms:
        if s.shape in test_shapes or has(test_totals, s.total_mm):
            labels.append("test")
        elif s.shape in val_shapes or has(val_totals, s.total_mm):
            labels.append("val")
        else:
            labels.append("train")
    for split in ("train", "test"):
        if split not in labels:
            raise PiffInputError("config",
                                 f"the split leaves no {split} storms; adjust split.test_shapes / *_totals_mm")
    return labels


def storm_chunks(n_storms: int, storms_per_job: int) -> list[range]:
    return [range(i, min(i + storms_per_job, n_storms)) for i in range(0, n_storms, storms_per_job)]


# ----------------------------------------------------------------------------- simulate
def _chunk_inputs(dem_path, storms_path, chunk: int, dataset_cfg: dict):
    """The DEM and the storms of chunk ``chunk`` (storms_per_job consecutive storms)."""
    from piff.hydro.terrain import read_dem

    storms = _load(storms_path)
    rows = storm_chunks(storms.sizes["storm"], int(dataset_cfg["simulate"]["storms_per_job"]))[chunk]
    return read_dem(dem_path), storms.isel(storm=list(rows))


# Storms per batched solver call in a simulate job: as many as fit this many cells (6 storms at
# 64 x 64, one storm from 128 x 128 up). Measured at 64 x 64 on one core (docs/hydrology.md,
# "Solver cost facts"): 6 storms a call cost 15-20 % less per storm than one by one; more storms
# per call save no more, because every call runs until its slowest storm reaches each output time.
BATCH_CELLS = 6 * 64 * 64


def storm_batches(n_storms: int, cells: int, batch_cells: int = BATCH_CELLS) -> list[list[int]]:
    """Storm indices of each solver call of a chunk: equal-sized batches of at most
    ``batch_cells // cells`` storms (at least 1). The last batch is padded with repeats of its last
    storm, so every call has the same shape and compiles once."""
    per = max(1, min(n_storms, batch_cells // max(cells, 1)))
    n_batches = -(-n_storms // per)
    size = -(-n_storms // n_batches)
    batches = [list(range(i, min(i + size, n_storms))) for i in range(0, n_storms, size)]
    return [b + [b[-1]] * (size - len(b)) for b in batches]


def solve(terrain, rain_mm_per_h, solver_cfg: dict, boundaries: str, progress=False):
    """One batched solver call with a dataset's solver settings: ``rain_mm_per_h`` (S, T) hourly
    intensities on ``terrain``; returns the :class:`piff.hydro.solver.SimulationResult`. The
    simulate rule and the solver ensemble of the ensemble verification both run the solver here."""
    from piff.hydro import solver as solver_mod

    scfg = solver_cfg
    return solver_mod.simulate(
        terrain.elevation, terrain.dx, np.asarray(rain_mm_per_h), manning=float(scfg.get("manning", 0.03)),
        boundaries=boundaries, infiltration_mm_per_h=scfg.get("infiltration_mm_per_h") or None,
        dtype=_dtype(scfg.get("dtype", "float32")), alpha=float(scfg.get("alpha", 0.5)),
        theta=float(scfg.get("theta", 0.8)), compile=bool(scfg.get("compile", False)),
        nodata_mask=terrain.nodata_mask, progress=progress)


def simulate_chunk(dem_path, storms_path, chunk: int, dataset_cfg: dict, *, dem: int, progress=False) -> xr.Dataset:
    """Run the solver for DEM number ``dem`` (file ``dem_path``) and one chunk of storms; returns
    depth, vx, vy, fluxes, loss."""
    ter, storms = _chunk_inputs(dem_path, storms_path, chunk, dataset_cfg)
    scfg = dataset_cfg.get("solver", {})
    boundaries = boundary_string(dataset_cfg, dem)
    n = storms.sizes["storm"]
    outputs = {k: [None] * n for k in ("depth", "vx", "vy", "flux_x", "flux_y", "loss")}
    residual, wall = [None] * n, [None] * n
    # Storms in batched calls (storm_batches), each storm with its own time step, so the results
    # equal those of one storm at a time; compile true is the fast path (piff.hydro.solver).
    for batch in storm_batches(n, ter.elevation.size):
        rain = storms["rainfall"].values[batch, 1:]
        t0 = time.perf_counter()
        res = solve(ter, rain, scfg, boundaries, progress=progress)
        seconds = (time.perf_counter() - t0) / len(set(batch))  # the call's time, shared by its storms
        for j, i in enumerate(batch):
            if wall[i] is not None:
                continue  # a repeat that pads the last batch
            for k in outputs:
                outputs[k][i] = getattr(res, k)[j]
            residual[i], wall[i] = res.mass_balance[j]["relative_residual"], seconds
            log.info("dem %s storm %s: peak %.3f m, residual %.2e, %.1f s", ter.name, int(storms.storm[i]),
                     float(res.depth[j].max()), residual[i], seconds)
    ny, nx = ter.elevation.shape
    ds = fmt.new_dataset(ny, nx, ter.dx, storms.sizes["time"] - 1)
    ds = ds.assign_coords(storm=storms["storm"])
    for k, v in outputs.items():
        fmt.add_variable(ds, k, np.stack(v)[None])
    fmt.add_variable(ds, "mass_residual", np.array(residual)[None])
    fmt.add_variable(ds, "solver_wall_time", np.array(wall)[None])
    ds.attrs.update({"boundary": boundaries, "solver_settings": repr(scfg)})
    return ds


def coarse_prior_chunk(dem_paths, storms_path, chunk: int, dataset_cfg: dict) -> xr.Dataset:
    """The coarse dynamic prior (solver on a coarser grid, downscaled) of every DEM for one
    chunk of storms: ``prior_coarse`` (dem, storm, time, y, x), DEMs in ``dem_paths`` order.

    Every DEM in one process, because on the coarse grid a run costs its fixed overheads more
    than its cells: the demo's 16 x 16 prior took 9-20 s per DEM as one job each (2 s of
    imports, loading or compiling the step, ~2 s of solving) and takes ~2 s per DEM here, where
    DEMs with the same boundary layout reuse one compiled step (docs/hydrology.md, "Cost")."""
    from piff.hydro.spm import coarse_dynamic_prior

    scfg = dataset_cfg.get("solver", {})
    factor = int(dataset_cfg.get("coarse_prior", {}).get("factor", 4))
    # All storms of the chunk in one batched run: on the coarse grid a step costs its per-step
    # overhead more than its cells, so one run of S storms costs about one storm's. A run of a few
    # thousand steps is too short to repay compiling the whole interval loop (~8 s per layout):
    # the compiled step, which torch caches on disk, is cheaper here (docs/hydrology.md, "Cost").
    compile_ = "step" if scfg.get("compile", False) else False
    maps, walls = [], []
    for dem, dem_path in enumerate(dem_paths):
        ter, storms = _chunk_inputs(dem_path, storms_path, chunk, dataset_cfg)
        t0 = time.perf_counter()
        maps.append(coarse_dynamic_prior(ter.elevation, ter.dx, storms["rainfall"].values[:, 1:],
                                         boundary_string(dataset_cfg, dem), factor=factor,
                                         manning=float(scfg.get("manning", 0.03)),
                                         alpha=float(scfg.get("alpha", 0.5)), theta=float(scfg.get("theta", 0.8)),
                                         compile=compile_, nodata_mask=ter.nodata_mask))
        seconds = time.perf_counter() - t0
        walls.append(np.full(storms.sizes["storm"], seconds / storms.sizes["storm"]))  # per storm, shared
        log.info("dem %s: coarse prior of %d storms in %.1f s", ter.name, storms.sizes["storm"], seconds)
    ny, nx = ter.elevation.shape
    ds = fmt.new_dataset(ny, nx, ter.dx, storms.sizes["time"] - 1)
    ds = ds.assign_coords(storm=storms["storm"])
    fmt.add_variable(ds, "prior_coarse", np.stack([np.asarray(m) for m in maps]))
    ds["prior_coarse_wall_time"] = xr.DataArray(np.array(walls, np.float32), dims=("dem", "storm"),
                                                attrs={"units": "s", "long_name": "coarse prior wall time"})
    return ds


# ----------------------------------------------------------------------------- spm
def build_spm(dem_path, dataset_cfg: dict, *, dem: int) -> xr.Dataset:
    """The SPM fill-and-spill table of DEM number ``dem``: spm(rain_bin, y, x) in metres."""
    from piff.hydro.boundary import parse_boundaries
    from piff.hydro.spm import SPM_BINS_MM, FillAndSpill
    from piff.hydro.terrain import read_dem

    ter = read_dem(dem_path)
    spec = parse_boundaries(boundary_string(dataset_cfg, dem))
    t0 = time.perf_counter()
    fs = FillAndSpill(ter.elevation, ter.dx, spec.outlet_mask(ter.elevation.shape), nodata_mask=ter.nodata_mask)
    table = fs.table(SPM_BINS_MM)
    ny, nx = ter.elevation.shape
    ds = fmt.new_dataset(ny, nx, ter.dx, 0)
    ds = ds.drop_vars("time").assign_coords(rain_bin=("rain_bin", SPM_BINS_MM.astype(np.float32),
                                                      {"units": "mm",
                                                       "long_name": "cumulative rainfall of the 24-h window "
                                                                    "(bin upper edge)"}))
    fmt.add_variable(ds, "spm", table[None])
    ds.attrs["spm_build_seconds"] = time.perf_counter() - t0
    return ds


# ----------------------------------------------------------------------------- assemble
def assemble(dem_paths, storms_path, sim_paths, spm_paths, prior_paths, dataset_cfg: dict, name: str) -> xr.Dataset:
    """Join per-DEM terrain, the storm table, the simulation chunks and the SPM tables.

    ``sim_paths[d]`` lists the simulation chunk files of DEM ``d`` in chunk order; ``prior_paths``
    the coarse-prior chunk files (every DEM in each) in chunk order.
    """
    from piff.hydro.terrain import read_dem

    terrains = [read_dem(p) for p in dem_paths]
    storms = _load(storms_path)
    ny, nx = terrains[0].elevation.shape
    dx = terrains[0].dx
    for p, t in zip(dem_paths, terrains):
        if t.elevation.shape != (ny, nx) or not np.isclose(t.dx, dx):
            raise PiffInputError(p, f"DEM grid {t.elevation.shape} at {t.dx} m differs from the first DEM "
                                    f"({ny}, {nx}) at {dx} m; one dataset needs one grid")
    ds = fmt.new_dataset(ny, nx, dx, storms.sizes["time"] - 1, crs_wkt=terrains[0].crs, attrs={
        "title": f"piff dataset {name}",
        "dataset_name": name,
        "config_hash": fmt.config_hash(dataset_cfg),
        "config_json": _json(dataset_cfg),
        "piff_version": __version__,
        "git_revision": fmt.git_revision(),
    })
    ds = ds.assign_coords(storm=storms["storm"], dem=("dem", np.arange(len(terrains), dtype=np.int32)))
    fmt.add_variable(ds, "elevation", np.stack([t.elevation for t in terrains]))
    masks = [t.nodata_mask if t.nodata_mask is not None else np.zeros((ny, nx), bool) for t in terrains]
    fmt.add_variable(ds, "nodata", np.stack(masks).astype(np.int8))
    fmt.add_variable(ds, "dem_name", np.array([t.name for t in terrains]))
    fmt.add_variable(ds, "boundary", np.array([boundary_string(dataset_cfg, d) for d in range(len(terrains))]))
    fmt.add_variable(ds, "dem_split", np.array(dem_splits(dataset_cfg)))
    for name_ in ("rainfall", "storm_shape", "storm_group", "storm_total", "split"):
        ds[name_] = storms[name_]

    sims = [xr.concat([_load(p) for p in chunks], dim="storm") for chunks in sim_paths]
    for var in ("depth", "vx", "vy", "flux_x", "flux_y", "loss", "mass_residual", "solver_wall_time"):
        stacked = np.concatenate([s[var].values for s in sims], axis=0)
        fmt.add_variable(ds, var, stacked)
    if not np.array_equal(sims[0]["storm"].values, storms["storm"].values):
        raise PiffInputError(sim_paths[0][0], "simulation chunks do not cover the storm table in order")
    if not np.any(ds["loss"].values):
        ds = ds.drop_vars("loss")  # no losses configured: the continuity identity has no loss term

    spm = [_load(p) for p in spm_paths]
    ds = ds.assign_coords(rain_bin=spm[0]["rain_bin"])
    fmt.add_variable(ds, "spm", np.concatenate([s["spm"].values for s in spm], axis=0))
    if prior_paths:
        priors = xr.concat([_load(p) for p in prior_paths], dim="storm")
        if priors.sizes["dem"] != len(terrains) or not np.array_equal(priors["storm"].values, storms["storm"].values):
            raise PiffInputError(prior_paths[0], f"coarse-prior chunks hold {priors.sizes['dem']} DEMs and "
                                                 f"{priors.sizes['storm']} storms, expected {len(terrains)} and "
                                                 f"{storms.sizes['storm']} in order")
        fmt.add_variable(ds, "prior_coarse", priors["prior_coarse"].values)
        ds["prior_coarse_wall_time"] = xr.DataArray(
            priors["prior_coarse_wall_time"].values, dims=("dem", "storm"),
            attrs={"units": "s", "long_name": "coarse dynamic prior wall time for the whole event"})
    check_dataset(ds, source=name)
    return ds


# A dataset of seconds: 2 DEMs of 16x16 cells, 6 storms of 6 hours, enough to train on. The
# tests' shared fixture and the training benchmark build it (with build_dataset_in).
SMOKE_DATASET = {
    "terrain": {"source": "synthetic", "count": 2, "size": 16, "cell_size_m": 20.0, "seed": 3, "sea_edge": "left"},
    "storms": {"shapes": ["uniform", "scs_type2", "huff_q1"], "totals_mm": [60.0, 150.0], "hours": 6, "seed": 3,
               "cap_mm_per_h": 150.0},
    "boundaries": "auto",
    "sea_level_m": 0.0,
    "solver": {"manning": 0.03, "alpha": 0.5, "theta": 0.8, "dtype": "float32", "compile": False},
    "simulate": {"storms_per_job": 6},
    "coarse_prior": {"enabled": True, "factor": 4},
    "split": {"test_shapes": ["huff_q1"], "test_totals_mm": [], "val_totals_mm": []},
}


def build_dataset_in(folder, dataset_cfg: dict = SMOKE_DATASET, name: str = "tiny", jobs: int = 1) -> Path:
    """The workflow's preprocessing chain run without Snakemake, every intermediate file in
    ``folder``; returns ``folder/dataset.nc``. For tests, benchmarks and machines without
    Snakemake (the GPU device): the workflow itself runs these steps as separate jobs.
    ``jobs`` > 1 runs the simulate and coarse-prior chunks in that many processes, the CPU's
    threads shared among them."""
    from piff.hydro.terrain import write_dem

    folder = Path(folder)
    cfg = json.loads(json.dumps(dataset_cfg))  # a private copy
    dems = [write_dem(make_terrain(cfg["terrain"], i), folder / f"dem_{i:03d}.nc")
            for i in range(dem_count(cfg["terrain"]))]
    storms = fmt.write_netcdf(make_storms(cfg["storms"], cfg["split"]), folder / "storms.nc")
    chunks = range(len(storm_chunks(_load(storms).sizes["storm"], cfg["simulate"]["storms_per_job"])))
    tasks = [(simulate_chunk, (d, storms, c, cfg), {"dem": i}, folder / f"sim_{i}_{c}.nc")
             for i, d in enumerate(dems) for c in chunks]
    if cfg.get("coarse_prior", {}).get("enabled"):
        tasks += [(coarse_prior_chunk, (dems, storms, c, cfg), {}, folder / f"prior_{c}.nc") for c in chunks]
    if jobs > 1:
        import os
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_run_chunk, tasks, [threads] * len(tasks)))
    else:
        done = [_run_chunk(t) for t in tasks]
    sims = [done[i * len(chunks):(i + 1) * len(chunks)] for i in range(len(dems))]
    priors = done[len(dems) * len(chunks):]
    spms = [fmt.write_netcdf(build_spm(d, cfg, dem=i), folder / f"spm_{i}.nc") for i, d in enumerate(dems)]
    return fmt.write_netcdf(assemble(dems, storms, sims, spms, priors, cfg, name), folder / "dataset.nc")


def _run_chunk(task, threads: int | None = None) -> Path:
    """One chunk job of build_dataset_in: (function, args, kwargs, output path)."""
    fn, args, kwargs, out = task
    if threads:
        import torch

        torch.set_num_threads(threads)
    return fmt.write_netcdf(fn(*args, **kwargs), out)


def check_dataset(ds: xr.Dataset, source="dataset", tol_m=None) -> dict:
    """Sanity checks of an assembled dataset: no NaN, non-negative depth, continuity closes."""
    for var in ("depth", "vx", "vy", "flux_x", "flux_y", "spm"):
        if var in ds and not np.all(np.isfinite(ds[var].values)):
            raise PiffInputError(source, f"{var} contains NaN or infinite values")
    if float(ds["depth"].min()) < 0:
        raise PiffInputError(source, "negative depths")
    worst = float(np.abs(continuity_residual(ds)).max()) if {"flux_x", "flux_y"} <= set(ds) else 0.0
    tol_m = tol_m if tol_m is not None else 1e-4
    if worst > tol_m:
        raise PiffInputError(source, f"discrete continuity does not close on the stored data: max |residual| "
                                     f"{worst:.3g} m per hour > {tol_m:g} m")
    return {"max_continuity_residual_m": worst}


def continuity_residual(ds: xr.Dataset) -> np.ndarray:
    """The hourly water-balance residual (metres per hour) of every cell, hours 1..T, from the
    stored fields only (:mod:`piff.hydro.continuity`). Zero up to float rounding for solver output."""
    depth = ds["depth"].values.astype(np.float64)
    stored = lambda name: ds[name].values.astype(np.float64)[:, :, 1:]  # intervals 1..T
    return water_balance_residual_m(depth[:, :, 1:], depth[:, :, :-1], stored("flux_x"), stored("flux_y"),
                                    ds["rainfall"].values.astype(np.float64)[None, :, 1:],
                                    float(ds.attrs["cell_size_m"]), stored("loss") if "loss" in ds else None)


def _load(path) -> xr.Dataset:
    """A small netCDF read into memory, its file handle closed (HDF5 dislikes reopening a file
    another handle still holds)."""
    with xr.open_dataset(path) as ds:
        return ds.load()


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def _json(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True, default=str)
