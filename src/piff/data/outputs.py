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


# ----------------------------------------------------------------------------- piff predict, rainfall ensembles
def ensemble_dataset(terrain, hours, rain_members, member_ids, products: dict, thresholds, quantiles) -> xr.Dataset:
    """The forecast products of a rainfall ensemble (``piff predict`` with several rain members;
    ``products`` from :func:`piff.inference.ensemble.ensemble_products`): per hour the ensemble
    mean, standard deviation, quantiles and exceedance probabilities; over the horizon the
    maximum depth (mean and quantiles over the members), the probability of ever exceeding each
    threshold and the expected arrival time; and the rain members."""
    ny, nx = terrain.shape
    coords = cf.grid_coords(ny, nx, terrain.geotransform())
    coords["time"] = cf.time_coord(np.asarray(hours, np.float64))
    coords["threshold"] = ("threshold", np.asarray(thresholds, np.float32), {"long_name": "depth threshold",
                                                                              "units": "m"})
    coords["quantile"] = ("quantile", np.asarray(quantiles, np.float32), {
        "long_name": "probability level of the ensemble quantile", "units": "1"})
    rain = np.asarray(rain_members, np.float32)
    coords["member"] = ("member", [str(m) for m in member_ids], {"long_name": "rainfall forecast member"})
    coords["hour"] = ("hour", np.arange(1, rain.shape[1] + 1, dtype=np.float64), {
        "units": "h", "long_name": "end of the forecast hour (rainfall interval (k-1, k])"})
    point = {"cell_methods": "time: point"}
    horizon = {"cell_methods": "time: maximum", "horizon_hours": f"{min(hours)}-{max(hours)}"}
    long_names = {
        "depth_mean": ("ensemble mean of the predicted water depth", "m", point),
        "depth_std": ("ensemble standard deviation of the predicted water depth", "m", point),
        "depth_quantile": ("ensemble quantile of the predicted water depth", "m", point),
        "p_exceed": ("probability that the water depth exceeds the threshold", "1", point),
        "max_depth_mean": ("ensemble mean of each member's maximum water depth over the horizon", "m", horizon),
        "max_depth_quantile": ("ensemble quantile of the members' maximum water depth over the horizon", "m",
                               horizon),
        "p_ever_exceed": ("probability that the water depth exceeds the threshold at some hour of the horizon", "1",
                          horizon),
        "arrival_time": ("expected hour of first exceedance of the threshold, over the members that exceed it "
                         "(NaN where none does)", "h", {"cell_methods": "time: minimum"}),
    }
    dims = {"depth_mean": ("time",), "depth_std": ("time",), "depth_quantile": ("time", "quantile"),
            "p_exceed": ("time", "threshold"), "max_depth_mean": (), "max_depth_quantile": ("quantile",),
            "p_ever_exceed": ("threshold",), "arrival_time": ("threshold",)}
    data = {k: (dims[k] + ("y", "x"), np.asarray(products[k], np.float32),
                {"long_name": long_names[k][0], "units": long_names[k][1], **long_names[k][2]}) for k in dims}
    data["elevation"] = _elevation(terrain.elevation)
    data["rainfall_member"] = (("member", "hour"), rain, {
        "long_name": f"rainfall intensity of each forecast member over the {INTERVAL}", "units": "mm h-1"})
    ds = xr.Dataset(data, coords=coords, attrs=_global_attrs("piff probabilistic flood forecast", "predict"))
    cf.add_crs(ds, terrain.crs, terrain.geotransform())
    return ds


def ensemble_bands(ds: xr.Dataset) -> list[tuple[str, np.ndarray]]:
    """(description, map) of the GeoTIFF bands of an ensemble forecast: over the horizon the mean
    maximum depth, P(ever > threshold) and the arrival time per threshold; for a single hour also
    that hour's mean, quantiles and P(> threshold)."""
    bands = [("max_depth_mean (m)", ds["max_depth_mean"].values)]
    for k, t in enumerate(ds["threshold"].values):
        bands.append((f"p_ever_exceed {t:g} m (1)", ds["p_ever_exceed"].values[k]))
    for k, t in enumerate(ds["threshold"].values):
        bands.append((f"arrival_time {t:g} m (h)", ds["arrival_time"].values[k]))
    if ds.sizes["time"] == 1:
        h = int(ds["time"].values[0])
        bands.append((f"depth_mean at hour {h} (m)", ds["depth_mean"].values[0]))
        for k, q in enumerate(ds["quantile"].values):
            bands.append((f"depth_quantile {q:g} at hour {h} (m)", ds["depth_quantile"].values[0, k]))
        for k, t in enumerate(ds["threshold"].values):
            bands.append((f"p_exceed {t:g} m at hour {h} (1)", ds["p_exceed"].values[0, k]))
    return bands


def write_ensemble_geotiff(ds: xr.Dataset, terrain, path) -> Path:
    """The bands of :func:`ensemble_bands` as one float32 GeoTIFF (DEM's CRS and transform, NaN
    nodata, each band described); atomic."""
    import rasterio

    path = Path(path)
    bands = ensemble_bands(ds)
    ny, nx = terrain.shape
    profile = dict(driver="GTiff", width=nx, height=ny, count=len(bands), dtype="float32", nodata=np.nan,
                   transform=rasterio.Affine(*terrain.geotransform()), crs=terrain.crs, compress="deflate")
    with atomic_path(path, suffix=path.suffix) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for i, (name, values) in enumerate(bands, start=1):
            dst.write(np.asarray(values, np.float32), i)
            dst.set_band_description(i, name)
        dst.update_tags(**{k: str(v) for k, v in ds.attrs.items()})
    return path
