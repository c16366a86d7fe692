"""The files the ``piff`` commands write, one layout each (CF-1.10, through :mod:`piff.cf`):

* :func:`write_simulation_netcdf`: one storm of a solver run (``piff simulate``);
* :func:`write_spm_netcdf`: the SPM fill-and-spill table of a DEM (``piff spm``);
* :func:`prediction_dataset`, :func:`write_prediction_netcdf`, :func:`write_prediction_geotiff`:
  flood-depth maps of ``piff predict``.

The commands only read their inputs and call these; the dataset itself (``dataset.nc``) has its
own layout in :mod:`piff.data.format`. Maps are NaN at nodata cells and declare NaN as their
fill value, so GIS tools mask them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from piff import __version__, cf
from piff.atomic import atomic_path
from piff.units import SECONDS_PER_HOUR

INTERVAL = "interval (k-1, k] ending at this time"


def _attr(value):
    """netCDF attributes take numbers and strings only."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return str(value)
    return value if isinstance(value, (int, float, str, np.integer, np.floating)) else str(value)


def _global_attrs(title: str, source: str) -> dict:
    return {"Conventions": cf.CONVENTIONS, "title": title, "institution": "piff",
            "source": f"piff {__version__} {source}", "piff_version": __version__}


def _elevation(values) -> tuple:
    return (("y", "x"), np.asarray(values, np.float32), {"long_name": "bed elevation", "units": "m",
                                                          "standard_name": "surface_altitude"})


# ----------------------------------------------------------------------------- piff simulate
def simulation_dataset(result, *, storm: int = 0, crs=None, transform=None, history: str = "",
                       extra_attrs: dict | None = None) -> xr.Dataset:
    """Storm ``storm`` of a :class:`piff.hydro.solver.SimulationResult` in the simulation layout:
    depth (state), hour-mean velocities, interval-integrated face fluxes and losses (the
    continuity identity of docs/architecture.md closes on them), elevation and hyetograph; the
    mass balance and solver settings as global attributes. Depth and velocities are NaN at
    nodata cells (walls outside the domain)."""
    ny, nx = result.elevation.shape
    transform = cf.local_transform(ny, result.dx) if transform is None else transform
    nodata = np.asarray(result.nodata_mask, bool)

    def field(name, dims, long_name, units, nan_at_nodata=True, **attrs):
        values = getattr(result, name)[storm]
        if nan_at_nodata and nodata.any():
            values = np.where(nodata, np.nan, values).astype(values.dtype)
        return (dims, values, {"long_name": long_name, "units": units, **attrs})

    data = {
        "depth": field("depth", ("time", "y", "x"), "water depth", "m", cell_methods="time: point"),
        "vx": field("vx", ("time", "y", "x"), f"mean cell-centre velocity towards +x over the {INTERVAL}", "m s-1",
                    comment="interval-integrated centre discharge / interval-integrated depth; 0 where dry"),
        "vy": field("vy", ("time", "y", "x"), f"mean cell-centre velocity towards increasing row (south) over the "
                    f"{INTERVAL}", "m s-1",
                    comment="interval-integrated centre discharge / interval-integrated depth; 0 where dry"),
        "flux_x": field("flux_x", ("time", "y", "x_face"),
                        f"unit-width face discharge towards +x integrated over the {INTERVAL}", "m2", False),
        "flux_y": field("flux_y", ("time", "y_face", "x"),
                        f"unit-width face discharge towards increasing row integrated over the {INTERVAL}",
                        "m2", False),
        "loss": field("loss", ("time", "y", "x"), f"infiltration loss depth over the {INTERVAL}", "m"),
        "elevation": _elevation(result.elevation),
        "rainfall": (("time",), result.rain_mm_per_h[storm], {"long_name": f"rainfall intensity over the {INTERVAL}",
                                                               "units": "mm h-1"}),
    }
    coords = cf.grid_coords(ny, nx, transform, faces=True)
    coords["time"] = cf.time_coord(np.arange(result.depth.shape[1]) * result.output_interval_s / SECONDS_PER_HOUR)
    ds = xr.Dataset(data, coords=coords)
    cf.add_crs(ds, crs, transform)
    mb = result.mass_balance[storm]
    ds.attrs = {
        **_global_attrs("piff local-inertial flood simulation",
                        "hydro.solver (local-inertial, Bates 2010 / de Almeida 2012)"),
        **ds.attrs,
        "history": history,
        "dx_m": float(result.dx),
        "output_interval_s": float(result.output_interval_s),
        "n_steps": int(result.n_steps),
        "wall_time_s": float(result.wall_time_s),
        "nodata_cells": int(nodata.sum()),
        **{f"mass_balance_{k}": float(v) for k, v in mb.items()},
        **{f"solver_{k}": _attr(v) for k, v in result.settings.items()},
        **{k: _attr(v) for k, v in (extra_attrs or {}).items()},
    }
    return ds


def write_simulation_netcdf(path, result, **kwargs) -> Path:
    """:func:`simulation_dataset` written atomically (keyword arguments as there)."""
    ds = simulation_dataset(result, **kwargs)
    return cf.write_netcdf(ds, path, nan_fill=cf.map_variables(ds))


# ----------------------------------------------------------------------------- piff spm
def write_spm_netcdf(path, table: np.ndarray, bins_mm: np.ndarray, terrain, attrs: dict | None = None) -> Path:
    """``spm(rain_bin, y, x)`` [m] with the elevation, atomically."""
    ny, nx = terrain.shape
    transform = terrain.geotransform()
    coords = cf.grid_coords(ny, nx, transform)
    coords["rain_bin"] = ("rain_bin", np.asarray(bins_mm, np.float32),
                          {"long_name": "cumulative rainfall of the 24-h window (bin upper edge)", "units": "mm"})
    ds = xr.Dataset(
        {"spm": (("rain_bin", "y", "x"), table.astype(np.float32),
                 {"long_name": "SPM fill-and-spill water depth for a cumulative rainfall", "units": "m"}),
         "elevation": _elevation(terrain.elevation)},
        coords=coords,
        attrs={**_global_attrs("piff SPM fill-and-spill prior table", "hydro.spm.FillAndSpill"),
               "cell_size_m": float(terrain.dx), **(attrs or {})})
    cf.add_crs(ds, terrain.crs, terrain.transform)
    return cf.write_netcdf(ds, path, nan_fill=("elevation",))


# ----------------------------------------------------------------------------- piff predict
def prediction_dataset(terrain, hours, rain, windows, mean, std, p_exceed, priors, thresholds) -> xr.Dataset:
    """The maps of ``piff predict`` (hours, y, x) [m]: ``depth_mean``, ``depth_std``, ``p_exceed``
    (time, threshold, y, x), ``prior`` (when the model has one), the elevation, the hour's
    rainfall and the 24-h window sum that the SPM lookup used."""
    ny, nx = terrain.shape
    coords = cf.grid_coords(ny, nx, terrain.geotransform())
    coords["time"] = cf.time_coord(np.asarray(hours, np.float64))
    coords["threshold"] = ("threshold", np.asarray(thresholds, np.float32), {"long_name": "depth threshold",
                                                                              "units": "m"})
    point = {"cell_methods": "time: point"}
    data = {
        "depth_mean": (("time", "y", "x"), mean, {"long_name": "ensemble mean of the predicted water depth",
                                                  "units": "m", **point}),
        "depth_std": (("time", "y", "x"), std, {"long_name": "ensemble standard deviation of the predicted water depth",
                                                "units": "m", **point}),
        "p_exceed": (("time", "threshold", "y", "x"), p_exceed, {
            "long_name": "probability that the water depth exceeds the threshold", "units": "1", **point}),
        "elevation": _elevation(terrain.elevation),
        "rainfall": (("time",), rain[np.asarray(hours) - 1].astype(np.float32), {
            "long_name": f"rainfall intensity over the {INTERVAL}", "units": "mm h-1"}),
        "rain_window_sum": (("time",), windows.sum(axis=1).astype(np.float32), {
            "long_name": "rainfall of the 24 h ending at this time (the SPM lookup sum)", "units": "mm"}),
    }
    if priors is not None:
        data["prior"] = (("time", "y", "x"), np.where(terrain.valid_mask(), priors, np.nan).astype(np.float32), {
            "long_name": "physics prior fed to the network (SPM fill-and-spill or coarse dynamic prior)",
            "units": "m", **point})
    ds = xr.Dataset(data, coords=coords, attrs=_global_attrs("piff flood-depth prediction", "predict"))
    cf.add_crs(ds, terrain.crs, terrain.geotransform())
    return ds


def write_prediction_netcdf(ds: xr.Dataset, path) -> Path:
    """float32 + zlib, NaN as the fill value of the maps; atomic."""
    return cf.write_netcdf(ds, path, nan_fill=cf.map_variables(ds))


def write_prediction_geotiff(ds: xr.Dataset, terrain, path) -> Path:
    """The mean depth [m] of the single hour in ``ds`` as a float32 GeoTIFF with the DEM's CRS,
    transform and NaN nodata; atomic."""
    import rasterio

    path = Path(path)
    depth = ds["depth_mean"].values[0].astype(np.float32)
    profile = dict(driver="GTiff", width=depth.shape[1], height=depth.shape[0], count=1, dtype="float32",
                   nodata=np.nan, transform=rasterio.Affine(*terrain.geotransform()), crs=terrain.crs,
                   compress="deflate")
    with atomic_path(path, suffix=path.suffix) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(depth, 1)
        dst.set_band_description(1, f"depth_mean at hour {int(ds['time'].values[0])} (m)")
        dst.update_tags(1, units="m")
        dst.update_tags(**{k: str(v) for k, v in ds.attrs.items()})
    return path
