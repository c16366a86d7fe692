"""Terrain: synthetic Tainan-like lowland DEMs, the jacksboro real DEM, DEM readers and writers.

Every DEM is a :class:`Terrain`: an ``(ny, nx)`` float32 elevation raster in metres (row 0 = top /
north edge, column 0 = left / west edge, see docs/architecture.md) with NaN at nodata cells,
square cells of ``dx`` metres and, when known, the CRS (WKT) and the affine transform in
``rasterio.Affine`` order ``(a, b, c, d, e, f)``: ``x = a col + b row + c``, ``y = d col + e row + f``.

Readers accept GeoTIFF (and other GDAL rasters), netCDF and ``.npy``; bad input raises
:class:`~piff.errors.PiffInputError` naming the file and the problem.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from piff.atomic import atomic_path
from piff.cf import GEOTIFF_SUFFIXES, NETCDF_SUFFIXES
from piff.errors import PiffInputError

EDGES = ("left", "right", "top", "bottom")
# metres per degree of latitude (mean Earth radius 6371.0 km)
_M_PER_DEG = 6371000.0 * np.pi / 180.0
_NC_NAMES = ("elevation", "z", "dem", "Band1")


@dataclass
class Terrain:
    """One DEM.

    elevation : (ny, nx) float32 bed elevation [m], NaN at nodata cells.
    dx : cell size [m] (square cells).
    crs : CRS as WKT, or None for a local metric grid.
    transform : affine ``(a, b, c, d, e, f)`` in rasterio.Affine order, or None (local grid).
    nodata_mask : (ny, nx) bool, True outside the DEM; None when every cell is valid.
    name : short name (file stem, ``synthetic_seed0``, ...).
    sea_edge : edge that touches the sea (``left``/``right``/``top``/``bottom``), if known.
    """

    elevation: np.ndarray
    dx: float
    crs: str | None = None
    transform: tuple | None = None
    nodata_mask: np.ndarray | None = None
    name: str = "dem"
    sea_edge: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.elevation.shape

    def geotransform(self) -> tuple:
        """The affine transform, or a local one (top-left corner at (0, ny*dx), metres)."""
        if self.transform is not None:
            return tuple(self.transform)
        ny = self.elevation.shape[0]
        return (float(self.dx), 0.0, 0.0, 0.0, -float(self.dx), ny * float(self.dx))

    def valid_mask(self) -> np.ndarray:
        """(ny, nx) bool: True where the DEM has an elevation."""
        if self.nodata_mask is None:
            return np.isfinite(self.elevation)
        return ~self.nodata_mask


def edge_mask(shape: tuple[int, int], edges=EDGES) -> np.ndarray:
    """(ny, nx) bool mask of the cells on the named edges."""
    ny, nx = shape
    mask = np.zeros((ny, nx), bool)
    index = {"left": (slice(None), 0), "right": (slice(None), nx - 1), "top": (0, slice(None)),
             "bottom": (ny - 1, slice(None))}
    for e in edges:
        mask[index[e]] = True
    return mask


# --------------------------------------------------------------------------------------------
# synthetic lowland


def _shape2d(size) -> tuple[int, int]:
    if np.ndim(size) == 0:
        return int(size), int(size)
    ny, nx = (int(s) for s in size)
    return ny, nx


def fbm_surface(shape: tuple[int, int], rng: np.random.Generator, beta: float = 3.0) -> np.ndarray:
    """Spectral fractional Brownian surface with power spectrum ~ k^-beta, zero mean, unit std."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf  # no mean component
    amp = k ** (-beta / 2.0)
    noise = rng.standard_normal((ny, nx // 2 + 1)) + 1j * rng.standard_normal((ny, nx // 2 + 1))
    field = np.fft.irfft2(noise * amp, s=(ny, nx))
    return (field - field.mean()) / field.std()


def _to_sea_left(a: np.ndarray, sea_edge: str) -> np.ndarray:
    """View of a raster rotated so that ``sea_edge`` becomes the left edge (inverse: _from_sea_left)."""
    return {"left": a, "right": a[:, ::-1], "top": a.T, "bottom": a[::-1].T}[sea_edge]


def _from_sea_left(a: np.ndarray, sea_edge: str) -> np.ndarray:
    return {"left": a, "right": a[:, ::-1], "top": a.T, "bottom": a.T[::-1]}[sea_edge]


def synthetic_lowland(size=64, dx: float = 20.0, seed: int = 0, *, relief_m: float = 1.5, slope: float = 0.0015,
                      sea_edge: str | None = "left", sea_level: float = 0.0, n_ponds: int | None = None,
                      roads: bool = True, drains: bool = True) -> Terrain:
    """A seeded Tainan-like urban lowland DEM (elevation in metres).

    Built with the sea on the left in a canonical frame, then rotated to ``sea_edge``:

    - spectral fBm (power ~ k^-3) with a peak-to-peak range of ``relief_m`` metres;
    - a regional ``slope`` (0.1-0.2 %) rising away from the sea edge, with the lowest sea-edge
      cell 0.2 m above ``sea_level`` (a coastal plain just above the sea);
    - ``n_ponds`` Gaussian ponds 0.5-2 m deep, 40-120 m wide (default: one per 2048 cells);
    - ``roads``: straight embankments +0.2-0.5 m along rows and columns (they dam water);
    - ``drains``: channels 0.5-1 m deep carved from inland to the sea edge, after the roads (so
      they pass under them like culverts), with a bed falling towards the sea.

    ``size`` is an int or ``(ny, nx)``; ``sea_edge=None`` gives a terrain without regional slope
    or drains. Deterministic for a given seed and parameters; takes milliseconds.
    """
    ny, nx = _shape2d(size)
    if min(ny, nx) < 4:
        raise ValueError(f"synthetic_lowland needs at least 4x4 cells, got {(ny, nx)}")
    if sea_edge is not None and sea_edge not in EDGES:
        raise ValueError(f"sea_edge must be one of {EDGES} or None, got {sea_edge!r}")
    rng = np.random.default_rng(seed)
    # canonical frame: rows along the coast (L), columns away from the sea (W)
    L, W = (ny, nx) if sea_edge in (None, "left", "right") else (nx, ny)
    dist = np.broadcast_to(np.arange(W) * dx, (L, W))  # metres from the sea edge

    fbm = fbm_surface((L, W), rng)
    z = relief_m * (fbm - fbm.min()) / (fbm.max() - fbm.min())
    if sea_edge is not None:
        z = z + slope * dist
    z = z - z[:, 0].min() + sea_level + 0.2
    z = _add_ponds(z, dx, rng, n_ponds)
    if roads:
        z = _add_roads(z, rng)
    if drains and sea_edge is not None:
        z = _carve_drains(z, dx, rng, slope, sea_level)

    elevation = z if sea_edge is None else _from_sea_left(z, sea_edge)
    return Terrain(np.ascontiguousarray(elevation, dtype=np.float32), float(dx), name=f"synthetic_seed{seed}",
                   sea_edge=sea_edge)


def _add_ponds(z: np.ndarray, dx: float, rng, n_ponds) -> np.ndarray:
    L, W = z.shape
    n = max(1, round(L * W / 2048)) if n_ponds is None else int(n_ponds)
    rows, cols = np.mgrid[0:L, 0:W]
    for _ in range(n):
        r, c = rng.uniform(0, L), rng.uniform(0.1 * W, W)  # not right on the shore
        sigma = max(rng.uniform(40.0, 120.0) / dx, 1.0)  # cells
        depth = rng.uniform(0.5, 2.0)
        z = z - depth * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma ** 2))
    return z


def _add_roads(z: np.ndarray, rng) -> np.ndarray:
    """Embankments one cell wide along a few rows and columns, at least 2 cells from the edges."""
    L, W = z.shape
    z = z.copy()
    for axis, n in ((0, L), (1, W)):
        if n < 8:
            continue
        count = max(1, n // 48)
        for line in rng.choice(np.arange(2, n - 2), size=count, replace=False):
            height = rng.uniform(0.2, 0.5)
            if axis == 0:
                z[line, :] += height
            else:
                z[:, line] += height
    return z


def _carve_drains(z: np.ndarray, dx: float, rng, slope: float, sea_level: float) -> np.ndarray:
    """Drains along rows from an inland head to the sea edge (column 0), bed falling seawards."""
    L, W = z.shape
    z = z.copy()
    count = max(1, L // 40)
    for row in rng.choice(np.arange(1, L - 1), size=min(count, L - 2), replace=False):
        length = int(rng.uniform(0.4, 0.8) * W)
        head = z[row, length - 1] - rng.uniform(0.5, 1.0)
        outfall = sea_level + 0.05
        # bed at least 0.5 x the regional slope, so it drains even when the head is low
        bed = np.maximum(np.linspace(outfall, head, length), outfall + 0.5 * slope * np.arange(length) * dx)
        bed = np.minimum.accumulate(bed[::-1])[::-1]  # monotone: never rising towards the sea
        z[row, :length] = np.minimum(z[row, :length], bed)
    return z


# --------------------------------------------------------------------------------------------
# jacksboro (real DEM shipped with matplotlib)


def condition_dem(elevation: np.ndarray, outlets: np.ndarray | None = None, max_iter: int = 100) -> np.ndarray:
    """Fill single-cell pits (SRTM-style artefacts): a valid cell strictly lower than all its
    valid 8 neighbours is raised to its lowest neighbour. Cells in ``outlets`` (bool mask,
    default: the domain edges) are left alone, since water may leave there. Multi-cell
    depressions (real ponds) are kept; the SPM needs them. NaN cells are ignored.
    Returns a new float array (same dtype as the input when floating, else float32)."""
    z = np.array(elevation, dtype=elevation.dtype if np.issubdtype(elevation.dtype, np.floating) else np.float32)
    valid = np.isfinite(z)
    outlets = edge_mask(z.shape) if outlets is None else np.asarray(outlets, bool)
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    for _ in range(max_iter):
        lowest = ndimage.minimum_filter(np.where(valid, z, np.inf), footprint=ring, mode="constant", cval=np.inf)
        pits = valid & ~outlets & (z < lowest) & np.isfinite(lowest)
        if not pits.any():
            break
        z[pits] = lowest[pits]
    return z


def _jacksboro_raw():
    """(elevation int16 (344, 403), cell size dx_m, dy_m) from matplotlib's sample data."""
    from matplotlib import cbook

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as data:
        elevation = np.asarray(data["elevation"])
        dlon, dlat = float(data["dx"]), float(data["dy"])
        lat = 0.5 * (float(data["ymin"]) + float(data["ymax"]))
    dy_m = dlat * _M_PER_DEG
    dx_m = dlon * _M_PER_DEG * np.cos(np.radians(lat))
    return elevation, dx_m, dy_m


def jacksboro(size=None, dx: float | None = None, relief_m: float | None = None, offset: int = 0,
              spread: int | None = None) -> Terrain:
    """The Jacksboro fault DEM (Tennessee ridges; 344 x 403 cells of 3 arc-seconds, elevations in
    metres) from matplotlib's sample data, as a hydrologically conditioned :class:`Terrain`.

    The grid is geographic (about 75 m east-west x 93 m north-south); it is treated as square
    cells of the area-preserving size sqrt(dx_ew dx_ns) ~ 83 m (``native``), with row 0 north.

    size : None (whole DEM) or int / ``(ny, nx)`` output cells of a crop.
    dx : output cell size [m]; None keeps the native size, other values resample (bilinear).
    relief_m : if given, elevations are rescaled linearly to span 0..relief_m metres
        (a flat-city test on real drainage structure).
    offset : selects the crop window: windows lie on a half-overlapping grid scanned row by row,
        window ``offset % count`` is taken (so several DEMs can come from one file).
    spread : if given, ``offset`` picks the offset-th of ``spread`` windows spaced evenly through
        that grid instead (far apart, so held-out and training windows do not overlap).
    """
    raw, dx_m, dy_m = _jacksboro_raw()
    native = float(np.sqrt(dx_m * dy_m))
    dx = native if dx is None else float(dx)
    z = raw.astype(np.float64)
    if size is None:
        ny, nx = (int(round(n * native / dx)) for n in raw.shape)
    else:
        ny, nx = _shape2d(size)
    # the window in native cells, then bilinear sampling at the output cell centres
    wy, wx = ny * dx / native, nx * dx / native
    if wy > raw.shape[0] + 1e-9 or wx > raw.shape[1] + 1e-9:
        raise ValueError(f"jacksboro: a {ny}x{nx} crop at {dx:g} m needs {wy:.0f}x{wx:.0f} native cells, "
                         f"the DEM has {raw.shape[0]}x{raw.shape[1]}")
    r0, c0 = _window_origin(raw.shape, (wy, wx), offset, spread)
    rows = r0 + (np.arange(ny) + 0.5) * dx / native - 0.5
    cols = c0 + (np.arange(nx) + 0.5) * dx / native - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    z = ndimage.map_coordinates(z, [rr, cc], order=1, mode="nearest")
    if relief_m is not None:
        z = (z - z.min()) * (float(relief_m) / max(z.max() - z.min(), 1e-9))
    z = condition_dem(z.astype(np.float32))
    return Terrain(z, dx, name=f"jacksboro_{offset}", sea_edge=None)


def _window_origin(shape, window, offset: int, spread: int | None = None) -> tuple[float, float]:
    """Top-left corner (native cells) of crop window ``offset`` on a half-overlapping grid, or with
    ``spread``: of the offset-th of ``spread`` windows evenly spaced, row by row, through the grid
    of windows that tile the DEM without overlap (so no two of them share a cell)."""
    starts = []
    for n, w in zip(shape, window):
        step = max(w if spread else w / 2.0, 1.0)
        count = int(np.floor((n - w) / step + 1e-9)) + 1
        starts.append(np.arange(count) * step)
    ys, xs = starts
    total = len(ys) * len(xs)
    if spread and spread > total:
        raise ValueError(f"jacksboro: {spread} windows of {window[0]:.0f}x{window[1]:.0f} native cells do not fit "
                         f"the {shape[0]}x{shape[1]} DEM without overlap (at most {total})")
    k = int((int(offset) % spread + 0.5) * total / spread) if spread else int(offset) % total
    return float(ys[k // len(xs)]), float(xs[k % len(xs)])


# --------------------------------------------------------------------------------------------
# grid operations


def nearest_fill(elevation: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each invalid cell takes the value of its nearest valid cell (for interpolation only)."""
    if valid.all():
        return elevation
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return elevation[tuple(idx)]


def resample_terrain(terrain: Terrain, dx: float) -> Terrain:
    """Bilinear resampling of a DEM to square cells of ``dx`` metres over the same extent (the
    top-left corner is kept; the cell count is rounded, so the far edges move by < dx/2).

    A new cell is nodata when the bilinear weight of valid source cells at its centre is < 0.5;
    nodata cells are nearest-filled before interpolating so they do not leak NaN. For large
    coarsening factors (> 2) an area average (e.g. ``gdalwarp -r average``) is the better tool:
    bilinear point sampling ignores the source cells between the sample points.
    """
    ny, nx = terrain.shape
    ratio = terrain.dx / float(dx)  # new cells per source cell
    my, mx = max(2, round(ny * ratio)), max(2, round(nx * ratio))
    # source index coordinates of the new cell centres (source cell i's centre is at i)
    rows = (np.arange(my) + 0.5) / ratio - 0.5
    cols = (np.arange(mx) + 0.5) / ratio - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    valid = terrain.valid_mask()
    z = ndimage.map_coordinates(nearest_fill(terrain.elevation.astype(np.float64), valid), grid, order=1,
                                mode="nearest")
    keep = ndimage.map_coordinates(valid.astype(np.float64), grid, order=1, mode="nearest") >= 0.5
    if not keep.any():
        raise PiffInputError(terrain.name, "no valid cell left after resampling")
    a, b, c, d, e, f = terrain.geotransform()
    transform = (math.copysign(dx, a), b, c, d, math.copysign(dx, e), f)
    return Terrain(np.where(keep, z, np.nan).astype(np.float32), float(dx), crs=terrain.crs,
                   transform=transform if terrain.transform is not None else None,
                   nodata_mask=None if keep.all() else ~keep, name=terrain.name, sea_edge=terrain.sea_edge)


def cell_centres(terrain: Terrain) -> tuple[np.ndarray, np.ndarray]:
    """(x (nx,), y (ny,)) cell-centre coordinates [CRS units, m] from the DEM's transform (or
    the local grid of piff.hydro.terrain when it has none)."""
    a, _, c, _, e, f = terrain.geotransform()
    ny, nx = terrain.shape
    return c + a * (np.arange(nx) + 0.5), f + e * (np.arange(ny) + 0.5)


# --------------------------------------------------------------------------------------------
# reading


def read_dem(path, dx: float | None = None) -> Terrain:
    """Read a DEM: GeoTIFF (or another GDAL raster), netCDF (``.nc``) or ``.npy``.

    dx : cell size [m]. Needed for ``.npy`` and for grids without a metric cell size (geographic
        CRS in degrees, no georeferencing); when given it overrides the file's cell size.

    Nodata cells (the GeoTIFF nodata value, netCDF ``_FillValue``/``missing_value``, NaN in a
    ``.npy``) become NaN with ``nodata_mask`` set. Rasters stored south-up are flipped so row 0
    is north. Raises PiffInputError(path, problem) for a missing or unreadable file, a raster
    that is not 2-D, all nodata, NaN/inf values without a nodata declaration, non-square or
    rotated cells, or a missing cell size.
    """
    path = Path(path)
    if not path.exists():
        raise PiffInputError(path, "DEM file does not exist")
    if dx is not None and not (np.isfinite(dx) and dx > 0):
        raise PiffInputError(path, f"cell size dx must be a positive number of metres, got {dx!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, dx)
    if suffix in NETCDF_SUFFIXES:
        return _read_netcdf(path, dx)
    return _read_gdal(path, dx)


def _finish(path, z: np.ndarray, nodata: np.ndarray, dx, crs=None, transform=None, name=None) -> Terrain:
    """Common checks: 2-D, finite where valid, not all nodata; NaN at nodata."""
    if z.ndim != 2:
        raise PiffInputError(path, f"elevation must be a 2-D raster, got shape {z.shape}")
    if min(z.shape) < 2:
        raise PiffInputError(path, f"elevation raster {z.shape} is too small (at least 2x2 cells)")
    if nodata.all():
        raise PiffInputError(path, "every cell is nodata")
    bad = ~nodata & ~np.isfinite(z)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise PiffInputError(path, f"{int(bad.sum())} cells are NaN or infinite (first at row {r}, column {c}) "
                                   "but the file declares no nodata value for them")
    elevation = np.where(nodata, np.nan, z).astype(np.float32)
    return Terrain(elevation, float(dx), crs=crs, transform=None if transform is None else tuple(map(float, transform)),
                   nodata_mask=nodata if nodata.any() else None, name=name or path.stem)


def _read_npy(path: Path, dx) -> Terrain:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as err:
        raise PiffInputError(path, f"not a readable .npy array ({type(err).__name__}: {err})") from err
    if dx is None:
        raise PiffInputError(path, "a .npy DEM carries no cell size: give dx (--dx METRES)")
    if z.dtype.kind not in "fiu":
        raise PiffInputError(path, f"elevation must be numeric, got dtype {z.dtype}")
    z = z.astype(np.float64)
    if np.isinf(z).any():
        raise PiffInputError(path, "contains infinite values (NaN marks nodata in a .npy DEM)")
    return _finish(path, z, np.isnan(z) if z.ndim == 2 else np.zeros(z.shape, bool), dx)


def _read_gdal(path: Path, dx) -> Terrain:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != 1:
                    raise PiffInputError(path, f"has {src.count} bands; expected a single-band elevation raster")
                band = src.read(1, masked=True)
                crs, tr, nodata_value = src.crs, src.transform, src.nodata
    except RasterioIOError as err:
        raise PiffInputError(path, f"not a readable raster ({err})") from err
    z = np.asarray(band.data, dtype=np.float64)
    nodata = np.ma.getmaskarray(band) if nodata_value is not None else np.zeros(z.shape, bool)
    if tr.b != 0 or tr.d != 0:
        raise PiffInputError(path, "rotated or sheared grids are not supported; warp to a north-up grid first")
    # GDAL reports a raster without geotransform as the identity (rows counted downwards)
    georeferenced = crs is not None or not tr.is_identity
    if georeferenced and tr.e > 0:  # south-up raster: flip so row 0 is north
        z, nodata = z[::-1], nodata[::-1]
        tr = rasterio.Affine(tr.a, 0.0, tr.c, 0.0, -tr.e, tr.f + tr.e * z.shape[0])
    if dx is None:
        if not georeferenced:
            raise PiffInputError(path, "has no georeferencing (no CRS, identity transform): give dx (--dx METRES)")
        if crs is not None and crs.is_geographic:
            raise PiffInputError(path, "has a geographic CRS (cells in degrees): "
                                       "reproject to metres or give dx (--dx METRES)")
        if not np.isclose(abs(tr.a), abs(tr.e), rtol=1e-6):
            raise PiffInputError(path, f"non-square cells ({abs(tr.a):g} x {abs(tr.e):g}); resample to square cells")
        dx = abs(tr.a)
    elif crs is not None and not crs.is_geographic and not np.isclose(abs(tr.a), abs(tr.e), rtol=1e-6):
        raise PiffInputError(path, f"non-square cells ({abs(tr.a):g} x {abs(tr.e):g}); resample to square cells")
    wkt = crs.to_wkt() if crs is not None else None
    return _finish(path, z, nodata, dx, crs=wkt, transform=tuple(tr)[:6] if georeferenced else None)


def _read_netcdf(path: Path, dx) -> Terrain:
    import xarray as xr

    try:
        ds = xr.open_dataset(path, mask_and_scale=True)
    except Exception as err:  # netCDF4 raises OSError, ValueError, RuntimeError ...
        raise PiffInputError(path, f"not a readable netCDF file ({type(err).__name__}: {err})") from err
    with ds:
        var = _pick_nc_variable(path, ds)
        da = ds[var].squeeze(drop=True)
        if da.ndim != 2:
            raise PiffInputError(path, f"variable {var} must be 2-D (y, x), got dims {ds[var].dims}")
        ydim, xdim = da.dims
        if ydim.lower() in ("x", "lon", "longitude") or xdim.lower() in ("y", "lat", "latitude"):
            da = da.transpose()
            ydim, xdim = da.dims
        z = np.asarray(da.values, dtype=np.float64)
        declared = any(k in da.encoding or k in da.attrs for k in ("_FillValue", "missing_value"))
        nodata = np.isnan(z) if declared else np.zeros(z.shape, bool)
        x = ds[xdim].values.astype(np.float64) if xdim in ds.coords else None
        y = ds[ydim].values.astype(np.float64) if ydim in ds.coords else None
        degrees = any("degree" in str(ds[d].attrs.get("units", "")) for d in (xdim, ydim) if d in ds.coords)
        crs = _nc_crs(ds, da)
        name = ds.attrs.get("dem_name")  # written by write_dem
    if np.isinf(z).any():
        raise PiffInputError(path, f"variable {var} contains infinite values")
    transform = None
    if x is not None and y is not None and len(x) > 1 and len(y) > 1:
        sx, sy = _uniform_step(path, x, xdim), _uniform_step(path, y, ydim)
        if sy > 0:  # y increasing = south-up rows: flip so row 0 is north
            z, nodata, y, sy = z[::-1], nodata[::-1], y[::-1], -sy
        if dx is None and degrees:
            raise PiffInputError(path, "coordinates are in degrees: reproject to metres or give dx (--dx METRES)")
        if not np.isclose(abs(sx), abs(sy), rtol=1e-6) and dx is None:
            raise PiffInputError(path, f"non-square cells ({abs(sx):g} x {abs(sy):g}); resample to square cells")
        dx = abs(sx) if dx is None else dx
        if not degrees:
            transform = (sx, 0.0, x[0] - sx / 2, 0.0, sy, y[0] - sy / 2)
    elif dx is None:
        raise PiffInputError(path, f"variable {var} has no x/y coordinates: give dx (--dx METRES)")
    return _finish(path, z, nodata, dx, crs=crs, transform=transform, name=name)


def _pick_nc_variable(path, ds) -> str:
    two_d = [v for v in ds.data_vars if ds[v].squeeze().ndim == 2]
    for name in _NC_NAMES:
        if name in ds.data_vars:
            return name
    if len(two_d) == 1:
        return two_d[0]
    if not two_d:
        raise PiffInputError(path, "no 2-D variable found (expected one named elevation, z, dem or Band1)")
    raise PiffInputError(path, f"several 2-D variables ({', '.join(two_d)}); name the elevation one "
                               "elevation, z, dem or Band1")


def _uniform_step(path, coord: np.ndarray, name: str) -> float:
    steps = np.diff(coord)
    if not np.allclose(steps, steps[0], rtol=1e-5, atol=0):
        raise PiffInputError(path, f"coordinate {name} is not evenly spaced")
    return float(steps[0])


def _nc_crs(ds, da) -> str | None:
    gm = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
    for holder in ([ds[gm].attrs] if gm and gm in ds.variables else []) + [ds.attrs]:
        for key in ("crs_wkt", "spatial_ref"):
            if holder.get(key):
                return str(holder[key])
    return None


# --------------------------------------------------------------------------------------------
# writing


def write_dem(terrain: Terrain, path) -> Path:
    """Write a DEM as GeoTIFF (``.tif``/``.tiff``), CF netCDF (``.nc``) or ``.npy``, atomically
    (a temporary file in the same folder, then ``os.replace``). NaN marks nodata in all three."""
    path = Path(path)
    suffix = path.suffix.lower()
    writers = {".npy": _write_npy, **{s: _write_tif for s in GEOTIFF_SUFFIXES},
               **{s: _write_nc for s in NETCDF_SUFFIXES}}
    if suffix not in writers:
        raise PiffInputError(path, "unknown DEM format: use .tif, .nc or .npy")
    with atomic_path(path, suffix=suffix) as tmp:  # the suffix tells rasterio/xarray the format
        writers[suffix](terrain, tmp)
    return path


def _elevation_with_nan(terrain: Terrain) -> np.ndarray:
    return np.where(terrain.valid_mask(), terrain.elevation, np.nan).astype(np.float32)


def _write_npy(terrain: Terrain, tmp: str) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, _elevation_with_nan(terrain))


def _write_tif(terrain: Terrain, tmp: str) -> None:
    import rasterio

    z = _elevation_with_nan(terrain)
    profile = dict(driver="GTiff", width=z.shape[1], height=z.shape[0], count=1, dtype="float32",
                   nodata=np.nan, transform=rasterio.Affine(*terrain.geotransform()),
                   crs=terrain.crs, compress="deflate")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(z, 1)


def _write_nc(terrain: Terrain, tmp: str) -> None:
    import xarray as xr

    from piff import cf

    z = _elevation_with_nan(terrain)
    ds = xr.Dataset(
        {"elevation": (("y", "x"), z,
                       {"units": "m", "standard_name": "surface_altitude", "long_name": "bed elevation"})},
        coords=cf.grid_coords(*z.shape, terrain.geotransform()),
        attrs={"Conventions": cf.CONVENTIONS, "title": f"DEM {terrain.name}", "dem_name": terrain.name,
               "cell_size_m": float(terrain.dx)})
    cf.add_crs(ds, terrain.crs, terrain.transform)
    ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=cf.encoding_for(ds, nan_fill=("elevation",)))
