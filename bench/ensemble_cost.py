"""What a flood ensemble costs as the members grow: the solver's, the emulator's and the
solver-anchored emulator's (docs/ensemble.md, "Anchored on a solver control run").

The workflow's own timed code paths (piff.evaluation.ensemble_runs: the solver on every member in
batched calls, the model through the piff predict pipeline, each after an untimed warm-up call)
run a forecast ensemble of N members for a few held-out storms of a run's dataset, and each
system's run on the members' central forecast (the control). Speed-ups against the solver
ensemble, per ensemble (every member of one storm on one DEM):

* raw: solver(N members) / model(N members)
* anchored: solver(N members) / anchored(N members), the anchored ensemble timed as the workflow
  times it (piff.evaluation.ensemble_runs.anchored_model_members): the model on the members and
  the control with the solver's control run alongside, where it fits on one core.

The solver batches members into one call, so on a small DEM its ensemble costs far less than N
single runs, and the one control run the anchoring needs weighs more. The control runs of both
systems are also timed alone, one after the other, for comparison. Run it alone: the timings
share the machine with nothing else. Skill is the ensemble verification's
(`snakemake results/ensemble_summary.csv`); this script measures cost only.

    python bench/ensemble_cost.py --run /path/to/run --members 10 30 50
    python bench/ensemble_cost.py --dataset D.nc --model M.pt --members 2 3 --storms 1 --dems 0 --no-write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piff import cf  # noqa: E402
from piff.evaluation import ensemble_runs as R  # noqa: E402


def measure(dataset, model, members: int, n_storms: int, dems, threads: int, nfe="default",
            hours=(6, 12, 18, 24)) -> dict:
    """Mean wall time [s] per ensemble of each run, for ``members`` rain members."""
    torch.set_num_threads(threads)
    cfg = {"n_storms": n_storms, "dems": dems, "members": members, "seed": 0, "samples": 1, "sampler": "euler",
           "nfe": nfe, "hours": [int(h) for h in hours]}
    with tempfile.TemporaryDirectory() as tmp:
        rain = cf.write_netcdf(R.rain_members_dataset(dataset, cfg), Path(tmp) / "rain.nc")
        walls = {
            "solver": R.solver_members(dataset, rain, cfg["hours"]),
            "solver control": R.solver_members(dataset, rain, cfg["hours"], control=True),
            "model": R.model_members(model, dataset, rain, cfg),
            "model control": R.model_members(model, dataset, rain, cfg, control=True),
            "anchored": R.anchored_model_members(model, dataset, rain, cfg),
        }
    return {k: float(np.mean(v["wall_time"].values)) for k, v in walls.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None,
                    help="a run folder: its data/demo/dataset.nc and results/phy/model.pt")
    ap.add_argument("--dataset", type=Path, default=None)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--members", type=int, nargs="+", default=[10, 30, 50])
    ap.add_argument("--storms", type=int, default=3,
                    help="held-out storms per member count (spread over the test split)")
    ap.add_argument("--dems", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hours", type=int, nargs="+", default=[6, 12, 18, 24], help="hours predicted (the demo's)")
    ap.add_argument("--nfe", default="default", type=lambda v: v if v == "default" else int(v),
                    help="the model's NFE (default: the one its evaluation measured, metrics.json beside it)")
    ap.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md untouched")
    args = ap.parse_args(argv)
    dataset = args.dataset or (args.run / "data" / "demo" / "dataset.nc" if args.run else None)
    model = args.model or (args.run / "results" / "phy" / "model.pt" if args.run else None)
    if dataset is None or model is None:
        ap.error("give --run, or --dataset and --model")

    lines = ["| members | solver ensemble (s) | solver control (s) | model ensemble (s) | model control (s) "
             "| anchored ensemble (s) | raw speed-up | anchored speed-up |", "|---:" * 8 + "|"]
    for n in args.members:
        t = measure(dataset, model, n, args.storms, args.dems, args.threads, args.nfe, args.hours)
        lines.append(f"| {n} | {t['solver']:.2f} | {t['solver control']:.2f} | {t['model']:.3f} "
                     f"| {t['model control']:.3f} | {t['anchored']:.3f} | {t['solver'] / t['model']:.1f}x "
                     f"| {t['solver'] / t['anchored']:.1f}x |")
        print(lines[-1], flush=True)
    body = (f"Wall time per ensemble (every member of one storm on one DEM), mean over {args.storms} held-out "
            f"storms x DEMs {args.dems} of `{dataset}`, model `{model}` (Euler, NFE {args.nfe}, hours {args.hours}), "
            f"{args.threads} torch threads. Skill: docs/ensemble.md.\n\n" + "\n".join(lines))
    print(body)
    if not args.no_write:
        write_section("ensemble-cost", "Ensemble cost against the member count: solver, emulator, anchored", body)


if __name__ == "__main__":
    main()
