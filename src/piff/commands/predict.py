"""``piff predict``: flood-depth maps for any DEM and a rainfall forecast.

    piff predict --model results/phy/model.pt --dem city.tif --rain forecast.csv \\
        --hours 1-24 --sampler euler_maruyama --members 16 --out flood.nc

Writes CF netCDF (``depth_mean``, ``depth_std``, ``p_exceed`` per threshold, the prior used;
see :func:`piff.inference.predict.predict_maps`), or, for exactly one hour, a GeoTIFF of the
mean depth (``--out flood.tif``) on the DEM's grid. A rainfall file with several members (an
NWP or nowcast ensemble) gives a probabilistic forecast: every member x ``--members`` bridge
samples, batched, with quantiles, exceedance and arrival-time products
(:func:`piff.inference.ensemble.ensemble_products`, docs/ensemble.md); ``--dressing K`` adds the
model's own error to it (each member dressed into K maps, :mod:`piff.inference.dressing`);
``--anchor-rain`` anchors every member on piff's solver run of the members' central forecast
(:mod:`piff.inference.anchoring`). A thin
wrapper: reading and checking files here, everything else in ``piff.inference.predict``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from piff.atomic import check_output
from piff.cf import GEOTIFF_SUFFIXES, NETCDF_SUFFIXES
from piff.choices import (
    ATTENTION_MODES,
    DEFAULT_ATTENTION,
    DEFAULT_PRECISION,
    PRECISIONS,
    SAMPLERS,
    STOCHASTIC_SAMPLERS,
)
from piff.commands import positive_float, positive_int, torch_device
from piff.errors import PiffInputError


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL.pt", help="trained model (piff train's model.pt)")
    parser.add_argument("--dem", required=True, metavar="FILE",
                        help="DEM in a projected CRS (GeoTIFF, netCDF or .npy); nodata cells stay nodata")
    parser.add_argument("--dx", type=positive_float, default=None, metavar="M",
                        help="cell size in metres, for DEM files that carry none (.npy)")
    parser.add_argument("--rain", required=True, metavar="CSV|NC",
                        help="hourly forecast: hour,mm_per_h csv, or a rainfall ensemble: a PIFF csv (time + one "
                             "inflow_<id> column per member), member,hour,mm_per_h rows, or a netCDF rainfall "
                             "(member, time) in mm h-1")
    parser.add_argument("--scenario", type=int, default=None, metavar="ID",
                        help="predict only this inflow_<id> column of a PIFF csv (default: every column, an ensemble)")
    parser.add_argument("--hours", default=None, metavar="LIST",
                        help="hours to predict, e.g. 1-24 or 6,12,18 (default: every hour of the forecast)")
    parser.add_argument("--nfe", type=int, default=None, metavar="N",
                        help="network evaluations per map (default: the NFE the workflow measured for this model, "
                             "kept in metrics.json beside it: the fewest within 3 %% of NFE 10's held-out MAE; "
                             "10 without one)")
    parser.add_argument("--sampler", default=None, choices=SAMPLERS,
                        help="default: the sampler the model was configured with")
    parser.add_argument("--members", type=int, default=16, metavar="N",
                        help="bridge samples per rainfall member with the stochastic sampler euler_maruyama "
                             "(default 16)")
    parser.add_argument("--dressing", type=int, default=0, metavar="K",
                        help="dress every forecast member into K maps drawn from the model's own errors on the "
                             "validation storms (error_dressing.nc beside the model, written by the workflow's "
                             "error_dressing rule; docs/ensemble.md), so the exceedance probabilities include the "
                             "model's error; gives the ensemble products (default 0: no dressing)")
    parser.add_argument("--anchor-rain", default=None, metavar="CSV",
                        help="the members' central (control) forecast, an hour,mm_per_h csv: piff's solver runs on "
                             "it once and every member becomes max(0, solver(control) + member - model(control)), "
                             "so the model's error shared by the members cancels (docs/ensemble.md, \"Anchored on "
                             "a solver control run\"); costs one solver run; gives the ensemble products")
    parser.add_argument("--seed", type=int, default=0, help="seed of the ensemble members (default 0)")
    parser.add_argument("--device", type=torch_device, default="auto",
                        help="auto (GPU if there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="maps per network call (default: as many as the memory budget allows on a GPU, "
                             "calls of about 65 000 cells on the CPU, where larger calls are slower)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help="torch CPU threads")
    parser.add_argument("--boundary", default=None, metavar="SPEC",
                        help='edges where water leaves, for the prior, e.g. "left=sea:0.0" '
                             "(default: free outflow on every edge)")
    parser.add_argument("--tile", type=tile_size, default=None, metavar="N|HxW",
                        help="run the network on overlapping tiles of this size (a multiple of the U-Net's size "
                             "multiple); default: the whole DEM at once when it fits, else tiles of the training "
                             "map size")
    parser.add_argument("--attention", choices=ATTENTION_MODES, default=DEFAULT_ATTENTION,
                        help="self-attention on a DEM larger than the training maps: within windows of the training "
                             "map size (default; cost linear in the area) or over the whole DEM (global)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="the network's arithmetic: auto (default) = bfloat16 where the device computes it "
                             "natively (a CPU with AMX or AVX-512 BF16, a CUDA GPU with bf16), else float32")
    parser.add_argument("--overlap", type=float, default=0.25, metavar="F",
                        help="overlapping fraction of neighbouring tiles (default 0.25)")
    parser.add_argument("--resample", action="store_true",
                        help="bilinearly resample a DEM of another cell size to the model's; the maps are written "
                             "on that resampled grid")
    parser.add_argument("--match-elevation", action="store_true",
                        help="shift the DEM (for the network only) so its mean elevation is the training mean, "
                             "for a DEM on another vertical datum")
    parser.add_argument("--coarse-factor", type=int, default=4, metavar="K",
                        help="coarsening of the coarse dynamic prior, for models trained with prior coarse (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", required=True, metavar="OUT.nc|OUT.tif",
                        help="netCDF output, or a GeoTIFF: the mean depth when exactly one hour is predicted; for a "
                             "rainfall ensemble, bands of the horizon products (max depth, P(ever > threshold), "
                             "arrival time) and, for one hour, that hour's mean, quantiles and probabilities")


def run(args) -> int:
    import numpy as np
    import torch

    from piff.data.outputs import write_prediction_geotiff, write_prediction_netcdf
    from piff.evaluation import default_nfe
    from piff.hydro.boundary import parse_boundaries
    from piff.hydro.storms import RainMembers, read_rainfall, read_rainfall_members
    from piff.hydro.terrain import read_dem, resample_terrain
    from piff.inference import predict as P
    from piff.model.trained import load_trained, resolve_device

    t0 = time.perf_counter()
    out = Path(args.out)
    geotiff = out.suffix.lower() in GEOTIFF_SUFFIXES
    _check_options(args, out)
    boundary = args.boundary if args.boundary is not None else P.DEFAULT_BOUNDARY
    parse_boundaries(boundary)  # a bad spec fails before the slow steps
    if args.threads:
        torch.set_num_threads(args.threads)

    # every input is read and checked before the model runs
    terrain = read_dem(args.dem, dx=args.dx)
    P.check_projected(terrain, args.dem)
    if args.scenario is not None:
        members = RainMembers((str(args.scenario),), read_rainfall(args.rain, scenario=args.scenario)[None])
    else:
        members = read_rainfall_members(args.rain)
    rain = members.rain[0]
    hours = P.parse_hours(args.hours, members.rain.shape[1])
    for m, r in zip(members.ids, members.rain):
        P.check_rain(r, hours, args.rain if len(members) == 1 else f"{args.rain} (member {m})")
    control = None
    if args.anchor_rain is not None:
        control = P.check_rain(read_rainfall(args.anchor_rain), hours, args.anchor_rain)
        if control.size != members.rain.shape[1]:
            raise PiffInputError(args.anchor_rain, f"has {control.size} hourly values, the members of {args.rain} "
                                                   f"{members.rain.shape[1]}: the control forecast must cover the "
                                                   "members' hours")
    ensemble = len(members) > 1 or args.dressing > 0 or control is not None
    if geotiff and len(hours) != 1 and not ensemble:
        raise PiffInputError(out, f"a GeoTIFF holds one map; {len(hours)} hours were requested "
                                  "(use --hours H, or a .nc output)")
    trained = load_trained(args.model, device=resolve_device(args.device))
    dressing = None
    if args.dressing:
        from piff.inference import dressing as D

        dressing = D.read(D.beside(args.model), fingerprint=str(trained.meta.get("fingerprint", "")))
    native_dx = terrain.dx
    if args.resample and not np.isclose(terrain.dx, trained.cell_size_m, rtol=P.CELL_SIZE_RTOL):
        terrain = resample_terrain(terrain, trained.cell_size_m)
        print(f"resampled {args.dem} from {native_dx:g} m to {terrain.dx:g} m cells "
              f"({terrain.shape[0]}x{terrain.shape[1]}); the maps are on this grid")
    P.check_cell_size(trained.cell_size_m, terrain, args.dem)

    offset = 0.0
    if args.match_elevation:
        offset = trained.normaliser.elevation_mean - float(np.nanmean(terrain.elevation))
    sampler = args.sampler or trained.experiment.get("sampler", "euler")
    # the NFE measured for this model by the workflow, unless --nfe says otherwise
    args.nfe = args.nfe or default_nfe.recorded(args.model, str(trained.meta.get("fingerprint", ""))) \
        or default_nfe.FALLBACK_NFE
    if dressing is not None and int(dressing.attrs.get("nfe", args.nfe)) != args.nfe:
        print(f"warning: the dressing was fitted at NFE {dressing.attrs.get('nfe')}, this forecast runs at NFE "
              f"{args.nfe}: its spread is that of the other NFE's errors")
    if dressing is not None and sampler in STOCHASTIC_SAMPLERS and args.members > 1:
        # the bridge's spread stands for the model's error, which the residuals already hold
        print(f"warning: dressing {args.members} {sampler} samples per member counts the model's error twice "
              f"(the bridge's spread and the dressing's residuals); use --members 1 or --sampler euler")
    if ensemble:
        return _run_ensemble(args, trained, terrain, members, hours, sampler, boundary, offset, native_dx, out,
                             geotiff, t0, dressing, control)
    ds = P.predict_maps(trained, terrain, rain, hours, nfe=args.nfe, sampler=sampler, members=args.members,
                        seed=args.seed, device=args.device, batch_size=args.batch_size, boundary=boundary,
                        overlap=args.overlap, tile=args.tile, coarse_factor=args.coarse_factor,
                        elevation_offset_m=offset, attention=args.attention, precision=args.precision,
                        progress=not args.no_progress, source=args.dem)
    ds.attrs.update({"dem": str(args.dem), "dem_cell_size_m": float(native_dx), "rainfall_file": str(args.rain),
                     "scenario": "" if args.scenario is None else str(args.scenario),
                     "resampled": int(terrain.dx != native_dx)})
    if geotiff:
        write_prediction_geotiff(ds, terrain, out)
    else:
        write_prediction_netcdf(ds, out)
    ds.attrs["wall_time_s"] = time.perf_counter() - t0  # the whole command, files included
    print(f"{out}: {P.summary(ds)}")
    return 0


def _run_ensemble(args, trained, terrain, members, hours, sampler, boundary, offset, native_dx, out, geotiff,
                  t0, dressing=None, control=None) -> int:
    """Every rain member x ``--members`` bridge samples, batched (piff.inference.ensemble), each
    dressed into ``--dressing`` maps when a dressing is given (piff.inference.dressing), or
    anchored on the solver's run of the ``control`` forecast (piff.inference.anchoring)."""
    import numpy as np

    from piff.data.outputs import ensemble_dataset, write_ensemble_geotiff, write_prediction_netcdf
    from piff.inference import anchoring
    from piff.inference import dressing as D
    from piff.inference import ensemble as E
    from piff.inference import predict as P

    opts = dict(samples=args.members, nfe=args.nfe, sampler=sampler, seed=args.seed, device=args.device,
                batch_size=args.batch_size, boundary=boundary, overlap=args.overlap, tile=args.tile,
                coarse_factor=args.coarse_factor, elevation_offset_m=offset, attention=args.attention,
                precision=args.precision, source=args.dem)
    def run_members():
        maps, run_info = E.predict_members(trained, terrain, members.rain, hours, progress=not args.no_progress,
                                           **opts)
        info.update(run_info)
        return maps.reshape((-1,) + maps.shape[2:])  # (forecast member, hour, y, x)

    def run_members_and_control():
        maps = run_members()
        # the control's own bridge samples (keyed apart from the members'), averaged: its level
        model_control, _ = E.predict_members(trained, terrain, control[None], hours, member_keys=[len(members)],
                                             **opts)
        return maps, model_control[0].mean(axis=0)

    info = {}
    if control is None:
        maps = run_members()
    else:
        # the solver's control run goes alongside the model's runs where it fits on one core
        maps, _ = anchoring.anchored_ensemble(run_members_and_control, terrain, control, hours, boundary,
                                              network=trained.model.net)
        info.update({"anchored_on": f"piff's solver on the control forecast {args.anchor_rain} "
                                    "(piff.inference.anchoring)"})
    if dressing is not None:
        maps = np.swapaxes(dressing.apply(maps, args.dressing), 0, 1).reshape((-1,) + maps.shape[1:])
        info.update({"dressing_maps_per_member": int(args.dressing), "dressing": str(D.beside(args.model)),
                     "forecast_members": int(len(maps))})
    products = E.ensemble_products(maps, hours)
    ds = ensemble_dataset(terrain, hours, members.rain, members.ids, products, P.THRESHOLDS_M, E.QUANTILES)
    ds.attrs.update(info)
    ds.attrs.update({"dem": str(args.dem), "dem_cell_size_m": float(native_dx), "rainfall_file": str(args.rain),
                     "resampled": int(terrain.dx != native_dx)})
    if geotiff:
        write_ensemble_geotiff(ds, terrain, out)
    else:
        write_prediction_netcdf(ds, out)
    ds.attrs["wall_time_s"] = time.perf_counter() - t0
    dressed = f" x {args.dressing} dressed maps" if dressing is not None else ""
    dressed += ", anchored on the solver's control run" if control is not None else ""
    print(f"{out}: {len(members)} rain members x {info['bridge_samples_per_member']} bridge samples{dressed}; "
          f"{P.summary(ds)}")
    return 0


def tile_size(text: str) -> tuple[int, int]:
    """An argparse type: ``N`` (square) or ``HxW`` cells."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected N or HxW cells, e.g. 64 or 64x128, got {text!r}")
    return int(parts[0]), int(parts[-1])


def _check_options(args, out: Path) -> None:
    """Option checks that need no file."""
    inputs = (args.model, args.dem, args.rain) + ((args.anchor_rain,) if args.anchor_rain else ())
    check_output(out, inputs=inputs, suffixes=NETCDF_SUFFIXES + GEOTIFF_SUFFIXES)
    for option, value, low in (("--nfe", args.nfe, 1), ("--members", args.members, 1), ("--dressing", args.dressing, 0),
                               ("--batch-size", args.batch_size, 1), ("--coarse-factor", args.coarse_factor, 1)):
        if value is not None and value < low:
            raise PiffInputError(option, f"must be at least {low}, got {value}")
    if args.anchor_rain is not None and args.dressing:
        raise PiffInputError("--anchor-rain", "and --dressing: the dressing holds the raw model's errors, far wider "
                                              "than an anchored member's; use one of them")
    if not 0.0 <= args.overlap < 1.0:
        raise PiffInputError("--overlap", f"must be in [0, 1), got {args.overlap}")
