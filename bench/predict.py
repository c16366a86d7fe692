"""Latency of operational prediction (``piff predict``) against the solver it replaces.

Case: a 256x256 synthetic lowland at 20 m (26 km2, PIFF's domain size), a 24-h SCS type II
storm of 150 mm, free outflow on every edge. The model is an *untrained* ``tiny`` network
built for 64x64 maps via ``piff.training.objective.Objective`` (latency does not depend on the
weights), so the DEM is covered by 64x64 tiles (overlap 0.25: 5 x 5 = 25 tiles per hour).
Measured with :func:`piff.inference.predict.predict_maps` (prior + tiled sampling + blending,
no file I/O), Euler, one member:

* one hour (hour 12) and all 24 hours, at NFE 1, 5 and 10;
* the SPM prior alone (fill-and-spill of the whole DEM + lookup for 24 hours);
* the local-inertial solver (``piff.hydro.solver.simulate``, ``compile=True`` when it works)
  on the same DEM and storm, and the speed-up solver / prediction for the 24-h event.

Usage: python bench/predict.py [--quick] [--threads N] [--batch-size N]
``--quick``: a 64x64 DEM (one tile), NFE 1 and 2, one repeat, eager solver (a smoke test).
Writes the "predict" section of docs/benchmarks.md via bench/_report.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_time as _median_time  # noqa: E402
from _report import write_section

from piff.hydro.solver import simulate  # noqa: E402
from piff.hydro.storms import hyetograph  # noqa: E402
from piff.hydro.terrain import synthetic_lowland  # noqa: E402
from piff.inference import predict as P  # noqa: E402
from piff.model import Normaliser  # noqa: E402
from piff.model.trained import TrainedModel
from piff.training.config import ExperimentConfig  # noqa: E402
from piff.training.objective import Objective  # noqa: E402

DX = 20.0
TRAIN_GRID = (64, 64)


def untrained_model(preset: str) -> TrainedModel:
    """A TrainedModel with random weights and plausible normalisation (lowland, metres)."""
    cfg = ExperimentConfig(model=preset)
    norm = Normaliser(elevation_mean=2.0, elevation_std=1.0, depth_scale=0.5)
    obj = Objective(cfg, normaliser_state=norm.state_dict())
    obj.model.eval()
    meta = {"cell_size_m": DX, "grid_shape": list(TRAIN_GRID), "train_config": cfg.to_dict(),
            "fingerprint": "untrained-benchmark", "step": 0}
    return TrainedModel(obj.model, obj.bridge, obj.normaliser, "piff", meta, Path(f"untrained-{preset}"))


def median_time(fn, repeats: int) -> float:
    return _median_time(fn, repeats, warmup=False)


def solver_time(terrain, rain, compile_: bool) -> tuple[float, str]:
    """Wall time of the 24-h solver run (after one compile warm-up) and how it ran."""
    def run(c):
        return simulate(terrain.elevation, DX, rain, boundaries=P.DEFAULT_BOUNDARY, compile=c)

    if compile_:
        try:
            run(True)  # compilation, not timed
            return median_time(lambda: run(True), 1), "torch.compile"
        except Exception as err:  # noqa: BLE001 - any compile failure falls back to eager
            print(f"compile failed ({type(err).__name__}); timing eager", flush=True)
    return median_time(lambda: run(False), 1), "eager"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64x64 DEM, NFE 1 and 2, one repeat, eager solver")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--batch-size", type=int, default=16, help="maps per network call (default 16)")
    ap.add_argument("--preset", default="tiny", help="model preset (default tiny)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size, nfes, repeats = (64, (1, 2), 1) if args.quick else (256, (1, 5, 10), 3)
    terrain = synthetic_lowland(size, DX, seed=0)
    rain = hyetograph("scs_type2", 150.0, 24)
    model = untrained_model(args.preset)
    all_hours = list(range(1, 25))
    n_tiles = len(P.tiling.tile_windows(terrain.shape, TRAIN_GRID, P.DEFAULT_OVERLAP))

    def predict(hours, nfe):
        return P.predict_maps(model, terrain, rain, hours, nfe=nfe, sampler="euler", batch_size=args.batch_size)

    predict([12], 1)  # warm-up: allocator, oneDNN kernel choice
    rows = []
    prior_s = median_time(lambda: P.prior_maps(terrain, rain, all_hours), repeats)
    rows.append(f"| SPM prior (fill-and-spill + lookup), 24 h | {prior_s * 1e3:.0f} ms | |")
    print(rows[-1], flush=True)
    day, hour = {}, {}
    for nfe in nfes:
        one = hour[nfe] = median_time(lambda n=nfe: predict([12], n), repeats)
        day[nfe] = median_time(lambda n=nfe: predict(all_hours, n), 1)
        rows.append(f"| predict, NFE {nfe}, 1 hour | {one:.2f} s | |")
        rows.append(f"| predict, NFE {nfe}, 24 hours | {day[nfe]:.1f} s | {day[nfe] / 24:.2f} s / map |")
        print(*rows[-2:], sep="\n", flush=True)
    solver_s, how = solver_time(terrain, rain, compile_=not args.quick)
    rows.append(f"| solver ({how}), 24 hours | {solver_s:.1f} s | |")
    print(rows[-1], flush=True)
    speedups = ", ".join(f"NFE {n}: {solver_s / day[n]:.1f}x" for n in nfes)
    per_map = ", ".join(f"NFE {n}: {solver_s / hour[n]:.0f}x" for n in nfes)
    body = (f"CPU, {torch.get_num_threads()} torch threads, float32. {size}x{size} DEM at {DX:g} m, 24-h SCS II "
            f"storm of 150 mm; untrained `{args.preset}` model for {TRAIN_GRID[0]}x{TRAIN_GRID[1]} maps, "
            f"{n_tiles} tiles per hour (overlap {P.DEFAULT_OVERLAP}), batch {args.batch_size}, Euler, one member. "
            f"1-hour times: median of {repeats}; 24-hour times: one run"
            f"{' (--quick: smoke test)' if args.quick else ''}. Prediction times include the SPM prior.\n\n"
            "| what | wall time | per map |\n|---|---|---|\n" + "\n".join(rows)
            + f"\n\nSpeed-up, solver time for the 24-h event / model time for one map (the issue's measure; "
              f"target >= 100x on a CPU): {per_map}. For all 24 maps of the event: {speedups}.")
    write_section(f"predict-{args.preset}", f"Operational prediction ({args.preset} preset): latency vs the solver",
                  body)


if __name__ == "__main__":
    main()
