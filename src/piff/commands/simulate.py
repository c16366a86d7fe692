"""``piff simulate``: run the local-inertial flood solver on a DEM and a storm, write CF netCDF.

    piff simulate --dem dem.tif --rain scenario_rainfall.csv --scenario 3 \\
        --boundary left=sea:0.0 --out flood.nc

The output holds hourly depth and velocities, hour-integrated face fluxes and losses (the
continuity identity of docs/architecture.md closes on them), the elevation, the hyetograph,
and the mass balance and solver settings as global attributes.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

import numpy as np

from piff.atomic import check_output
from piff.cf import NETCDF_SUFFIXES
from piff.commands import positive_float, positive_int
from piff.units import M2_PER_KM2


def add_arguments(parser) -> None:
    parser.add_argument("--dem", required=True, metavar="FILE",
                        help="DEM raster (GeoTIFF, .npy, ...; see piff.hydro.terrain)")
    parser.add_argument("--dx", type=positive_float, default=None, metavar="M",
                        help="cell size in metres (required when the DEM file carries none, e.g. .npy)")
    parser.add_argument("--rain", required=True, metavar="CSV",
                        help="hourly rainfall: PIFF scenario_rainfall.csv (time + inflow_<id>) or hour,mm_per_h")
    parser.add_argument("--scenario", type=int, default=None, metavar="ID",
                        help="scenario id (the <id> of an inflow_<id> column) in a multi-scenario rainfall file")
    parser.add_argument("--manning", type=positive_float, default=0.03, metavar="N", help="Manning n (default 0.03)")
    parser.add_argument("--boundary", default="", metavar="SPEC",
                        help='edge conditions, e.g. "left=sea:0.0,right=free" (unnamed edges closed)')
    parser.add_argument("--hours", type=positive_int, default=None, metavar="N",
                        help="hours to simulate (default: storm length)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the solver loop, falling back to eager with a warning (default: on; "
                             "--no-compile runs eager: no ~10 s of compilation, but several times slower a step)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--out", required=True, metavar="OUT.nc", help="output netCDF file")


def run(args) -> int:
    import torch

    from piff.data.outputs import write_simulation_netcdf
    from piff.hydro.boundary import parse_boundaries
    from piff.hydro.solver import simulate
    from piff.hydro.storms import read_rainfall
    from piff.hydro.terrain import read_dem

    out = check_output(args.out, inputs=(args.dem, args.rain), suffixes=NETCDF_SUFFIXES)
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
        if key == "compile" and value is False:
            parts.append("--no-compile")  # compiling is the default
        if key.startswith("_") or key == "command" or value in (None, False, ""):
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def summary_line(result, out) -> str:
    """One line: peak depth, flooded area (cells >= 0.05 m at some hour), mass residual, nodata
    cells (NaN in the output), steps and wall time."""
    depth = result.depth[0]
    wet_area_km2 = np.count_nonzero(depth.max(axis=0) >= 0.05) * result.dx ** 2 / M2_PER_KM2
    mb = result.mass_balance[0]
    return (f"{out}: peak depth {float(depth.max()):.3f} m, wet area (>= 0.05 m) {wet_area_km2:.3f} km2, "
            f"mass residual {mb['relative_residual']:.1e} of the water, "
            f"{int(result.nodata_mask.sum())} nodata cells (NaN), {result.n_steps} steps in {result.wall_time_s:.1f} s")
