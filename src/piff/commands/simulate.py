"""``piff simulate``: run the local-inertial flood solver on a DEM and a storm, write CF netCDF.

    piff simulate --dem dem.tif --rain scenario_rainfall.csv --scenario 3 \\
        --boundary left=sea:0.0 --out flood.nc

The output holds hourly depth and velocities, hour-integrated face fluxes and losses (the
continuity identity of docs/architecture.md closes on them), the elevation, the hyetograph,
and the mass balance and solver settings as global attributes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from piff.data.format import write_netcdf
from piff.errors import PiffInputError



def add_arguments(parser) -> None:
    parser.add_argument("--dem", required=True, metavar="FILE", help="DEM raster (GeoTIFF, .npy, ...; see piff.hydro.terrain)")
    parser.add_argument("--dx", type=float, default=None, metavar="M",
                        help="cell size in metres (required when the DEM file carries none, e.g. .npy)")
    parser.add_argument("--rain", required=True, metavar="CSV",
                        help="hourly rainfall: PIFF scenario_rainfall.csv (time + inflow_<id>) or hour,mm_per_h")
    parser.add_argument("--scenario", type=int, default=None, metavar="ID",
                        help="scenario id (the <id> of an inflow_<id> column) in a multi-scenario rainfall file")
    parser.add_argument("--manning", type=float, default=0.03, metavar="N", help="Manning n (default 0.03)")
    parser.add_argument("--boundary", default="", metavar="SPEC",
                        help='edge conditions, e.g. "left=sea:0.0,right=free" (unnamed edges closed)')
    parser.add_argument("--hours", type=int, default=None, metavar="N", help="hours to simulate (default: storm length)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the time step (falls back to eager)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--out", required=True, metavar="OUT.nc", help="output netCDF file")


def run(args) -> int:
    import torch

    from piff.hydro.boundary import parse_boundaries
    from piff.hydro.solver import simulate
    from piff.hydro.storms import read_rainfall
    from piff.hydro.terrain import read_dem

    out = Path(args.out)
    if not out.parent.is_dir():
        raise PiffInputError("--out", f"directory {str(out.parent)!r} does not exist")
    if args.hours is not None and args.hours < 1:
        raise PiffInputError("--hours", "must be at least 1")
    spec = parse_boundaries(args.boundary)  # fail on a bad spec before reading anything
    terrain = read_dem(args.dem, dx=args.dx)
    rain = read_rainfall(args.rain, scenario=args.scenario)
    result = simulate(terrain.elevation, terrain.dx, rain, manning=args.manning, boundaries=spec, hours=args.hours,
                      dtype=getattr(torch, args.dtype), device=args.device, compile=args.compile,
                      progress=args.progress, nodata_mask=terrain.nodata_mask, source=str(args.dem),
                      rain_source=str(args.rain))
    history = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} {command_line(args)}"
    write_simulation_netcdf(out, result, crs=terrain.crs, transform=terrain.transform, history=history,
                            extra_attrs={"dem": str(args.dem), "rainfall_file": str(args.rain),
                                         "scenario": "" if args.scenario is None else str(args.scenario)})
    print(summary_line(result, out))
    return 0


def command_line(args) -> str:
    """The equivalent ``piff simulate`` command line, for the history attribute."""
    parts = ["piff simulate"]
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key == "command" or value in (None, False, ""):
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def summary_line(result, out) -> str:
    """One line: peak depth, flooded area (cells >= 0.05 m at some hour), mass residual, wall time."""
    depth = result.depth[0]
    wet_area_km2 = np.count_nonzero(depth.max(axis=0) >= 0.05) * result.dx ** 2 / 1e6
    mb = result.mass_balance[0]
    return (f"{out}: peak depth {float(depth.max()):.3f} m, wet area (>= 0.05 m) {wet_area_km2:.3f} km2, "
            f"mass residual {mb['relative_residual']:.1e} of the water, {result.n_steps} steps in {result.wall_time_s:.1f} s")


def _coordinates(ny, nx, dx, transform):
    """Cell-centre and face coordinates in metres from a north-up affine ``(a, b, c, d, e, f)``
    (rasterio order: x = a col + b row + c, y = d col + e row + f). Without one, the local grid
    of piff.hydro.terrain: top-left corner at (0, ny dx), y decreasing with the row."""
    if transform is None:
        transform = (dx, 0.0, 0.0, 0.0, -dx, ny * dx)
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    if b != 0 or d != 0:
        raise PiffInputError("--dem", "rotated geotransforms are not supported")
    x_face = c + a * np.arange(nx + 1)
    y_face = f + e * np.arange(ny + 1)
    return 0.5 * (x_face[:-1] + x_face[1:]), 0.5 * (y_face[:-1] + y_face[1:]), x_face, y_face


def write_simulation_netcdf(path, result, *, storm=0, crs=None, transform=None, history="", extra_attrs=None):
    """Write storm ``storm`` of a SimulationResult as CF-1.10 netCDF (tmp file + atomic rename)."""
    import xarray as xr

    from piff import __version__

    ny, nx = result.elevation.shape
    x, y, x_face, y_face = _coordinates(ny, nx, result.dx, transform)
    hours = np.arange(result.depth.shape[1]) * result.output_interval_s / 3600.0
    gm = {"grid_mapping": "crs"} if crs else {}

    def field(name, dims, long_name, units, **attrs):
        return (dims, getattr(result, name)[storm], {"long_name": long_name, "units": units, **gm, **attrs})

    interval = "interval (k-1, k] ending at this time"
    data = {
        "depth": field("depth", ("time", "y", "x"), "water depth", "m", cell_methods="time: point"),
        "vx": field("vx", ("time", "y", "x"), f"mean cell-centre velocity towards +x over the {interval}", "m s-1",
                    comment="interval-integrated centre discharge / interval-integrated depth; 0 where dry"),
        "vy": field("vy", ("time", "y", "x"), f"mean cell-centre velocity towards increasing row (south) over the {interval}",
                    "m s-1", comment="interval-integrated centre discharge / interval-integrated depth; 0 where dry"),
        "flux_x": field("flux_x", ("time", "y", "x_face"), f"unit-width face discharge towards +x integrated over the {interval}",
                        "m2"),
        "flux_y": field("flux_y", ("time", "y_face", "x"),
                        f"unit-width face discharge towards increasing row integrated over the {interval}", "m2"),
        "loss": field("loss", ("time", "y", "x"), f"infiltration loss depth over the {interval}", "m"),
        "elevation": (("y", "x"), result.elevation, {"long_name": "bed elevation", "units": "m",
                                                     "standard_name": "surface_altitude", **gm}),
        "rainfall": (("time",), result.rain_mm_per_h[storm], {"long_name": f"rainfall intensity over the {interval}",
                                                               "units": "mm h-1"}),
    }
    coords = {
        "time": ("time", hours, {"long_name": "hours since storm start", "units": "h", "axis": "T"}),
        "y": ("y", y, {"long_name": "cell-centre y", "units": "m", "axis": "Y",
                       **({"standard_name": "projection_y_coordinate"} if crs else {})}),
        "x": ("x", x, {"long_name": "cell-centre x", "units": "m", "axis": "X",
                       **({"standard_name": "projection_x_coordinate"} if crs else {})}),
        "y_face": ("y_face", y_face, {"long_name": "y of the cell faces between rows (row i has faces i and i+1)", "units": "m"}),
        "x_face": ("x_face", x_face, {"long_name": "x of the cell faces between columns", "units": "m"}),
    }
    ds = xr.Dataset(data, coords=coords)
    if crs:
        ds["crs"] = ((), np.int32(0), {"crs_wkt": str(crs), "spatial_ref": str(crs)})
    mb = result.mass_balance[storm]
    ds.attrs = {
        "Conventions": "CF-1.10",
        "title": "piff local-inertial flood simulation",
        "institution": "piff",
        "source": f"piff {__version__} hydro.solver (local-inertial, Bates 2010 / de Almeida 2012)",
        "history": history,
        "piff_version": __version__,
        "dx_m": float(result.dx),
        "output_interval_s": float(result.output_interval_s),
        "n_steps": int(result.n_steps),
        "wall_time_s": float(result.wall_time_s),
        **{f"mass_balance_{k}": float(v) for k, v in mb.items()},
        **{f"solver_{k}": _attr(v) for k, v in result.settings.items()},
        **{k: _attr(v) for k, v in (extra_attrs or {}).items()},
    }
    return write_netcdf(ds, path, nan_fill=("elevation",))


def _attr(value):
    """netCDF attributes take numbers and strings only."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return str(value)
    return value if isinstance(value, (int, float, str, np.integer, np.floating)) else str(value)
