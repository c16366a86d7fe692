"""``piff import-png``: convert a PIFF PNG dataset folder into a piff netCDF dataset.

The accepted folder layout is described in :mod:`piff.data.png_import`. The output is
written atomically (temporary file, then rename), so a failed import leaves any existing
file untouched.
"""

from __future__ import annotations

import argparse

from piff.errors import PiffInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="PIFF PNG dataset folder (elevation_stats.csv, scenario_rainfall.csv, PNGs)")
    parser.add_argument("--out", required=True, help="output netCDF dataset, e.g. data/piff/dataset.nc")
    parser.add_argument("--depth-full-scale", type=float, default=4.0, metavar="M",
                        help="metres of a black depth/SPM pixel (255 = dry); default 4")
    parser.add_argument("--dx", type=float, default=20.0, metavar="M", help="cell size in metres; default 20")
    parser.add_argument("--test-ids", default="", metavar="IDS", help="comma-separated scenario ids of the test split")
    parser.add_argument("--val-ids", default="", metavar="IDS", help="comma-separated scenario ids of the val split")
    parser.add_argument("--velocity-full-scale", type=float, default=None, metavar="M_PER_S",
                        help="import vx/vy PNGs, decoded as (2 p/255 - 1) * this; default: velocity not imported")
    parser.add_argument("--hours", type=int, default=None, metavar="T",
                        help="import hours 0..T only; default: every hour of the depth maps")
    parser.add_argument("--outlets", default=None, metavar="EDGES",
                        help="edges where water leaves in the computed SPM table, e.g. left,bottom; default: all")


def run(args) -> int:
    from piff.atomic import check_output
    from piff.cf import NETCDF_SUFFIXES
    from piff.data import format as fmt
    from piff.data.png_import import import_png_folder

    check_output(args.out, inputs=(args.src,), suffixes=NETCDF_SUFFIXES, create_folder=True)
    ds = import_png_folder(args.src, depth_full_scale_m=args.depth_full_scale, dx=args.dx,
                           test_ids=parse_ids("--test-ids", args.test_ids),
                           val_ids=parse_ids("--val-ids", args.val_ids),
                           velocity_full_scale=args.velocity_full_scale, hours=args.hours, outlets=args.outlets)
    path = fmt.write_netcdf(ds, args.out)
    print(summary(ds, path))
    return 0


def parse_ids(option: str, text: str) -> list[int]:
    """``"3,7"`` -> ``[3, 7]``; empty -> ``[]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PiffInputError(option, f"expected comma-separated integer scenario ids, got {text!r}") from None


def summary(ds, path) -> str:
    labels = ds["split"].values.astype(str).tolist()
    counts = ", ".join(f"{s} {labels.count(s)}" for s in ("train", "val", "test"))
    extras = [v for v in ("vx", "vy") if v in ds]
    return (f"wrote {path}: {ds.sizes['dem']} DEM(s), {ds.sizes['storm']} storms ({counts}), "
            f"hours 0..{ds.sizes['time'] - 1}, "
            f"{ds.sizes['y']}x{ds.sizes['x']} cells of {ds.attrs['cell_size_m']:g} m, "
            f"depth step {ds.attrs['quantisation_step_m'] * 100:.2g} cm, SPM {ds.attrs['spm_source'].split(' ')[0]}"
            + (f", with {'/'.join(extras)}" if extras else ""))
