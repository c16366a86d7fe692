"""The CF-1.10 layout every netCDF file of piff shares: grid coordinates, the CRS variable,
the time axis, the encoding and the atomic write.

One owner for all writers (the dataset in ``piff.data.format``, DEMs in ``piff.hydro.terrain``,
``piff simulate`` / ``piff spm`` outputs in ``piff.data.outputs``, ``piff predict`` maps). It
sits at the bottom of the package (it imports nothing of piff but ``atomic``) so that the hydro
layer can use it without importing the data layer above it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from piff.atomic import atomic_path

CONVENTIONS = "CF-1.10"
NETCDF_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf")  # what piff reads and writes as netCDF
GEOTIFF_SUFFIXES = (".tif", ".tiff")
GRID_DIMS = ("y", "x", "y_face", "x_face")


def local_transform(ny: int, dx: float) -> tuple:
    """The affine of a grid without georeference: top-left corner at (0, ny dx), metres."""
    return (float(dx), 0.0, 0.0, 0.0, -float(dx), ny * float(dx))


def grid_coords(ny: int, nx: int, transform, *, faces: bool = False) -> dict:
    """Cell-centre (and optionally face) coordinates [m] from a north-up affine
    ``(a, b, c, d, e, f)`` in rasterio order (x = a col + b row + c, y = d col + e row + f),
    as ``{name: (dim, values, attrs)}`` ready for ``xarray.Dataset(coords=...)``. Row 0 is the
    top edge, so ``y`` decreases with the row index as in a GeoTIFF."""
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    if b != 0 or d != 0:
        raise ValueError("rotated geotransforms are not supported")
    coords = {
        "y": ("y", f + e * (np.arange(ny) + 0.5), {"units": "m", "standard_name": "projection_y_coordinate",
                                                     "long_name": "y of cell centre", "axis": "Y"}),
        "x": ("x", c + a * (np.arange(nx) + 0.5), {"units": "m", "standard_name": "projection_x_coordinate",
                                                     "long_name": "x of cell centre", "axis": "X"}),
    }
    if faces:
        coords["y_face"] = ("y_face", f + e * np.arange(ny + 1), {"units": "m",
                                                                   "long_name": "y of cell face (top edge of row)"})
        coords["x_face"] = ("x_face", c + a * np.arange(nx + 1), {"units": "m",
                                                                   "long_name": "x of cell face (left edge of column)"})
    return coords


def time_coord(hours) -> tuple:
    """The ``time`` coordinate: output hours since the storm start (docs/architecture.md)."""
    return ("time", np.asarray(hours), {"units": "h", "long_name": "hours since storm start", "axis": "T"})


def add_crs(ds, crs_wkt: str | None, transform=None) -> None:
    """Add the grid-mapping variable ``crs`` (WKT, and the GDAL GeoTransform when known) and
    point every (y, x) data variable at it. A grid without CRS gets nothing."""
    if not crs_wkt:
        return
    attrs = {"crs_wkt": str(crs_wkt), "spatial_ref": str(crs_wkt)}
    if transform is not None:
        a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
        attrs["GeoTransform"] = " ".join(f"{v!r}" for v in (c, a, b, f, d, e))  # GDAL order
    ds["crs"] = ((), np.int32(0), attrs)
    ds.attrs["crs_wkt"] = str(crs_wkt)
    for var in ds.data_vars.values():
        if {"y", "x"} & set(var.dims) or {"y_face", "x_face"} & set(var.dims):
            var.attrs["grid_mapping"] = "crs"


# Compression of piff's own files (the dataset, its per-job chunks, samples): zstd level 1
# writes the demo dataset ~4x faster than zlib level 4 (2.3 s vs 9.2 s for 460 MB of maps)
# and reads it ~2x faster, at 3 % more disk (docs/data.md, "Storage").
# Products a user hands to other tools (DEMs, `piff predict` and `piff simulate` maps) keep zlib,
# which every netCDF-4 reader decodes; zstd needs netCDF-C >= 4.9 with its filter plugins (the
# netCDF4 wheels bundle them). Without zstd support in this netCDF4 build, zlib is used.
PORTABLE = "zlib"
FAST = "zstd"


def codec_available(codec: str) -> bool:
    """Whether this netCDF4 build can write ``codec`` (:data:`PORTABLE` always can)."""
    if codec == PORTABLE:
        return True
    import netCDF4

    return bool(getattr(netCDF4, "__has_zstandard_support__", False))


def encoding_for(ds, nan_fill=(), codec: str = PORTABLE) -> dict:
    """Compressed with ``codec`` (zlib level 4 after the byte shuffle, or zstd level 1, to
    which netCDF4-python applies no shuffle), one 2-D (y, x) field per chunk, no fill value on
    coordinates or data (float data are float32 already); the variables named in ``nan_fill``
    declare NaN as their fill value, so GIS tools mask nodata cells."""
    if codec not in (PORTABLE, FAST):
        raise ValueError(f"codec must be {PORTABLE!r} or {FAST!r}, got {codec!r}")
    if not codec_available(codec):
        codec = PORTABLE
    compression = ({"zlib": True, "complevel": 4, "shuffle": True} if codec == PORTABLE
                   else {"compression": FAST, "complevel": 1})
    enc = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind == "f":
            fill = np.array(np.nan, var.dtype) if name in nan_fill else None
            e = {**compression, "_FillValue": fill}
            if var.ndim >= 2 and var.dims[-1] in ("x", "x_face") and var.dims[-2] in ("y", "y_face"):
                e["chunksizes"] = tuple(n if d in GRID_DIMS else 1 for d, n in zip(var.dims, var.shape))
            enc[name] = e
    for name in ds.coords:
        enc[name] = {"_FillValue": None}
    return enc


def map_variables(ds) -> list:
    """Names of the float (.., y, x) variables: the maps whose NaN means nodata."""
    return [n for n, v in ds.data_vars.items() if v.dtype.kind == "f" and v.dims[-2:] == ("y", "x")]


def write_netcdf(ds, path: str | os.PathLike, nan_fill=(), codec: str = PORTABLE) -> Path:
    """Write with :func:`encoding_for` atomically: a temporary file in the same folder, fsync,
    then os.replace. Every netCDF piff writes goes through here."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding_for(ds, nan_fill, codec))
    return Path(path)
