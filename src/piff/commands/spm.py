"""``piff spm``: build the SPM fill-and-spill prior table of a DEM and write it as CF netCDF.

    piff spm --dem dem.tif --boundary left=sea:0.0 --bins 5:720:5 --out spm.nc

The output holds ``spm(rain_bin, y, x)``: water depth [m] after ``rain_bin`` mm of cumulative
rainfall (one map per bin), the elevation, x/y cell-centre coordinates in metres and the CRS
when the DEM has one. Water leaves only through the sea/free edges of ``--boundary``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np

from piff.atomic import check_output
from piff.cf import NETCDF_SUFFIXES
from piff.commands import positive_float
from piff.errors import PiffInputError


def add_arguments(parser) -> None:
    parser.add_argument("--dem", required=True, metavar="FILE", help="DEM raster (GeoTIFF, netCDF or .npy)")
    parser.add_argument("--dx", type=positive_float, default=None, metavar="M",
                        help="cell size in metres (required when the DEM file carries none, e.g. .npy)")
    parser.add_argument("--boundary", default="", metavar="SPEC",
                        help='edge conditions, e.g. "left=sea:0.0,right=free": water leaves through sea and free '
                             "edges only (unnamed edges closed; all closed = a closed basin)")
    parser.add_argument("--bins", default="5:720:5", metavar="START:STOP:STEP",
                        help="cumulative rainfall bins in mm, STOP included (default 5:720:5, PIFF's 144 maps)")
    parser.add_argument("--out", required=True, metavar="SPM.nc", help="output netCDF file")


def parse_bins(text: str) -> np.ndarray:
    """``"5:720:5"`` -> array([5, 10, ..., 720]) mm (STOP included)."""
    parts = text.split(":")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise PiffInputError("--bins", f"{text!r} is not START:STOP:STEP in mm (e.g. 5:720:5)") from None
    if not all(np.isfinite([start, stop, step])) or start <= 0 or step <= 0 or stop < start:
        raise PiffInputError("--bins", f"{text!r}: need 0 < START <= STOP and STEP > 0 (mm)")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    if n > 10000:
        raise PiffInputError("--bins", f"{text!r} gives {n} bins; at most 10000")
    return start + step * np.arange(n)


def run(args) -> int:
    from piff.data.outputs import write_spm_netcdf
    from piff.hydro.boundary import parse_boundaries
    from piff.hydro.spm import FillAndSpill
    from piff.hydro.terrain import read_dem

    out = check_output(args.out, inputs=(args.dem,), suffixes=NETCDF_SUFFIXES)
    spec = parse_boundaries(args.boundary)  # fail on bad options before reading anything
    bins = parse_bins(args.bins)
    terrain = read_dem(args.dem, dx=args.dx)
    t0 = time.perf_counter()
    fs = FillAndSpill(terrain.elevation, terrain.dx, spec.outlet_mask(terrain.shape), nodata_mask=terrain.nodata_mask)
    table = fs.table(bins)
    seconds = time.perf_counter() - t0
    history = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} piff spm --dem {args.dem} --boundary " \
              f"{spec.to_string()} --bins {args.bins} --out {args.out}"
    write_spm_netcdf(out, table, bins, terrain, attrs={
        "boundary": spec.to_string(), "dem": str(args.dem), "history": history,
        "n_depressions": int(fs.n_depressions), "build_seconds": float(seconds)})
    print(f"{out}: {len(bins)} maps ({bins[0]:g}-{bins[-1]:g} mm), {fs.n_depressions} depressions, "
          f"max depth {float(table.max()):.3f} m, built in {seconds:.2f} s")
    return 0
