"""The piff dataset format: one CF-1.10 netCDF file per dataset.

This module is the single source of truth for variable names, dimensions, units and the
on-disk encoding. Writers (the preprocessing workflow, the PIFF PNG importer) build an
``xarray.Dataset`` with :func:`new_dataset` / :func:`add_variable` and save it with
:func:`write_netcdf` (the CF layout and the atomic write of :mod:`piff.cf`); readers call
:func:`open_dataset`, which checks the layout and raises
:class:`~piff.errors.PiffInputError` naming the file and the problem.
See ``docs/data.md`` for the human description.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from piff import __version__, cf
from piff.cf import CONVENTIONS  # noqa: F401  (re-exported)
from piff.errors import PiffInputError

FORMAT_VERSION = "1"

# name -> (dims, units, long_name, standard_name or None)
VARIABLES = {
    "elevation": (("dem", "y", "x"), "m", "bed elevation", "surface_altitude"),
    "nodata": (("dem", "y", "x"), "1", "cell outside the DEM (1) or valid (0)", None),
    "rainfall": (("storm", "time"), "mm h-1", "rainfall intensity during the hour ending at time",
                 "rainfall_rate"),
    "depth": (("dem", "storm", "time", "y", "x"), "m", "water depth above the bed", None),
    "vx": (("dem", "storm", "time", "y", "x"), "m s-1",
           "hour-mean x velocity (towards +x) during the hour ending at time", None),
    "vy": (("dem", "storm", "time", "y", "x"), "m s-1",
           "hour-mean y velocity (towards +row, southwards) during the hour ending at time", None),
    "flux_x": (("dem", "storm", "time", "y", "x_face"), "m2",
               "hour-integrated unit-width discharge through x faces (towards +x) "
               "during the hour ending at time", None),
    "flux_y": (("dem", "storm", "time", "y_face", "x"), "m2",
               "hour-integrated unit-width discharge through y faces (towards +row) "
               "during the hour ending at time", None),
    "loss": (("dem", "storm", "time", "y", "x"), "m", "infiltration loss during the hour ending at time", None),
    "spm": (("dem", "rain_bin", "y", "x"), "m", "SPM fill-and-spill water depth for a cumulative rainfall", None),
    "prior_coarse": (("dem", "storm", "time", "y", "x"), "m",
                     "coarse dynamic prior: solver on a coarser grid, downscaled", None),
    "storm_shape": (("storm",), None, "hyetograph shape", None),
    "storm_group": (("storm",), None, "storm group (uniform, design, real_like)", None),
    "storm_total": (("storm",), "mm", "24-h rainfall total", None),
    "split": (("storm",), None, "train, val or test", None),
    "dem_name": (("dem",), None, "DEM name", None),
    "dem_split": (("dem",), None, "train (terrain seen in training) or test (held-out terrain)", None),
    "boundary": (("dem",), None, "solver boundary conditions per edge", None),
    "mass_residual": (("dem", "storm"), "1", "solver mass-balance residual relative to the rain volume", None),
    "solver_wall_time": (("dem", "storm"), "s",
                         "solver wall time for the whole event (a batched call's time shared by its storms)", None),
}
REQUIRED = ("elevation", "rainfall", "depth", "spm", "storm_shape", "storm_group", "storm_total", "split", "dem_name")
SPLITS = ("train", "val", "test")
# the terrain of a test map: a training DEM (held-out storm only) or a held-out DEM
TERRAINS = ("seen", "unseen")
STORM_GROUPS = ("uniform", "design", "real_like")


def storm_ids_in_split(ds: xr.Dataset, split: str) -> np.ndarray:
    """Storm coordinate values of one split, read from the stored labels (never recomputed)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    labels = ds["split"].values.astype(str)
    return ds["storm"].values[labels == split]


def dem_split(ds: xr.Dataset) -> np.ndarray:
    """Per DEM ``train`` or ``test`` (held-out terrain), read from the stored labels; a dataset
    without them (older builds, PNG imports) trains on every DEM."""
    if "dem_split" not in ds:
        return np.full(ds.sizes["dem"], "train")
    return ds["dem_split"].values.astype(str)


def dems_in_split(ds: xr.Dataset, split: str) -> np.ndarray:
    """DEM positions a split uses: train and val maps come from the training DEMs only; test maps
    from every DEM (held-out storms on seen terrain, and on the held-out DEMs)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    labels = dem_split(ds)
    return np.arange(len(labels)) if split == "test" else np.nonzero(labels == "train")[0]


def terrain_of_dems(ds: xr.Dataset) -> dict[int, str]:
    """DEM coordinate value -> ``seen`` or ``unseen`` (:data:`TERRAINS`)."""
    dems = ds["dem"].values if "dem" in ds.coords else np.arange(ds.sizes["dem"])
    return {int(d): "unseen" if s == "test" else "seen" for d, s in zip(dems, dem_split(ds))}


def new_dataset(ny: int, nx: int, dx: float, hours: int, *, x0: float = 0.0, y0: float | None = None,
                crs_wkt: str | None = None, attrs: dict | None = None) -> xr.Dataset:
    """An empty dataset with the grid coordinates (cell centres and faces, metres) and time 0..hours.

    ``x0``/``y0`` are the left/top edge coordinates; by default the grid is local with the
    bottom-left corner at (0, 0) (:func:`piff.cf.local_transform`).
    """
    transform = (float(dx), 0.0, float(x0), 0.0, -float(dx), ny * float(dx) if y0 is None else float(y0))
    coords = cf.grid_coords(ny, nx, transform, faces=True)
    coords["time"] = cf.time_coord(np.arange(hours + 1, dtype=np.int32))
    ds = xr.Dataset(coords=coords)
    ds.attrs.update({
        "Conventions": CONVENTIONS,
        "title": "piff flood dataset",
        "institution": "piff",
        "source": f"piff {__version__}",
        "piff_format_version": FORMAT_VERSION,
        "cell_size_m": float(dx),
        "history": f"{_now()} created by piff {__version__}",
    })
    cf.add_crs(ds, crs_wkt)
    ds.attrs.update(attrs or {})
    return ds


def add_variable(ds: xr.Dataset, name: str, values, coords: dict | None = None) -> None:
    """Add one of the :data:`VARIABLES` with its standard dims and attributes."""
    dims, units, long_name, standard_name = VARIABLES[name]
    values = np.asarray(values)
    if values.ndim != len(dims):
        raise ValueError(f"{name} must have dims {dims}, got an array of shape {values.shape}")
    if values.dtype.kind == "f":
        values = values.astype(np.float32)
    attrs = {"long_name": long_name}
    if units is not None:
        attrs["units"] = units
    if standard_name:
        attrs["standard_name"] = standard_name
    if "crs" in ds and {"y", "x"} <= set(dims):
        attrs["grid_mapping"] = "crs"
    if "time" in dims and name not in ("depth", "prior_coarse"):
        attrs["cell_methods"] = "time: mean (interval: 1 h, ending at time)" if name in ("vx", "vy", "rainfall") \
            else "time: sum (interval: 1 h, ending at time)"
    ds[name] = xr.DataArray(values, dims=dims, coords=coords or {}, attrs=attrs)


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """The writer of piff's own files (datasets, their per-job chunks, samples): the CF layout
    and atomic write of :func:`piff.cf.write_netcdf`, compressed with the fast codec
    (:data:`piff.cf.FAST`) because these files are large and only piff reads them."""
    return cf.write_netcdf(ds, path, codec=cf.FAST)


def open_dataset(path: str | os.PathLike, *, require=REQUIRED, load: bool = False) -> xr.Dataset:
    """Open a piff dataset and check its layout; errors name the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise PiffInputError(path, "dataset file does not exist")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except Exception as err:  # netCDF4 raises OSError, ValueError, RuntimeError ...
        raise PiffInputError(path, f"not a readable netCDF file ({type(err).__name__}: {err})") from err
    missing = [v for v in require if v not in ds.variables]
    if missing:
        ds.close()
        raise PiffInputError(path, f"not a piff dataset: missing variables {', '.join(missing)}")
    for name in require:
        dims = VARIABLES[name][0]
        if ds[name].dims != dims:
            ds.close()
            raise PiffInputError(path, f"variable {name} has dims {ds[name].dims}, expected {dims}")
    if "cell_size_m" not in ds.attrs:
        ds.close()
        raise PiffInputError(path, "missing global attribute cell_size_m")
    if load:
        ds.load()
        ds.close()  # release the HDF5 handle: reopening a file still held open can fail
    return ds


def config_hash(obj) -> str:
    """A short, stable hash of a JSON-able configuration (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path, chunk=1 << 22) -> str:
    """SHA-256 of a file's bytes: the identity of a dataset in model fingerprints and samples."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
