"""Operational prediction (``piff predict``) against the solver it replaces: speed and skill side by side.

Case, for each size n in --sizes (default 128, 256, 512 cells square): a synthetic Tainan-like
lowland DEM of n x n cells at 20 m that no model was trained on (seed 100 + n), a 24-h SCS type II
storm of 150 mm, the sea on the left edge (the demo datasets' boundary rule), float32.

* solver: ``piff.hydro.solver.simulate`` on the fast path (compile=True, eager fallback), the same
  torch threads as the model; its compile warm-up is not timed. Its hourly depths are the truth.
* model: the trained ``--model`` (default ``results/phy/model.pt``, the main job's `phy`) through
  :func:`piff.inference.predict.predict_maps` (prior + network, no file I/O), Euler, one member,
  at each NFE in --nfe plus the model's measured default NFE (``piff.evaluation.default_nfe``):
  one map (hour 12; median of --repeats) and all 24 hourly maps in one call (one run), after one
  untimed warm-up call per size. ``--inference`` (INFERENCE) says how the network covers the DEM:
  the whole DEM with self-attention within windows of the training map size (``windows``, piff
  predict's default), the whole DEM with global attention (``global``), or overlapping tiles of
  the training map size (``tiled``); ``--precision`` the network's arithmetic (``auto``: bfloat16
  where the CPU has it natively, AMX or AVX-512 BF16; ``fp32``; ``bf16``). Every combination is
  compared on the same solver run.
* skill at the same setting: MAE and pooled CSI@0.1 of the 24 maps against the solver on this
  unseen DEM, and the held-out MAE / pooled CSI@0.1 of the model on the demo test set at that NFE
  (seen and unseen terrain, from ``metrics.json`` beside the model), so speed never hides a loss of skill.

Speed-up = solver wall time for the 24-h event / model wall time (one map; all 24 maps). The
shared machine's speed drifts by tens of per cent within minutes, so at the default NFE the
solver and the model are timed in --pairs back-to-back pairs (solver event, one map, 24 maps) and
the ratios are the median over the pairs of each pair's ratio, with their range; the other NFEs
are timed once against the median solver time. Targets
(issue 14, 2-core CPU, 256 x 256, the default NFE): >= 100x for one map, >= 10x for 24 maps, and a
ratio that does not fall from 256 to 512.

    python bench/predict.py                                  # ~10 min on 2 cores; writes docs/benchmarks.md
    python bench/predict.py --sizes 64 --nfe 1 --repeats 1 --no-write   # smoke test, < 1 min
    python bench/predict.py --inference windows global tiled --nfe 1 --pairs 1 --no-write   # the three ways
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_time, write_section  # noqa: E402

from piff.choices import PRECISIONS  # noqa: E402
from piff.data.preprocess import boundary_string  # noqa: E402
from piff.evaluation import default_nfe  # noqa: E402
from piff.hydro import metrics as M  # noqa: E402
from piff.hydro.solver import simulate  # noqa: E402
from piff.hydro.storms import hyetograph  # noqa: E402
from piff.hydro.terrain import synthetic_lowland  # noqa: E402
from piff.inference import predict as P  # noqa: E402
from piff.model.trained import load_trained, native_bf16  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DX = 20.0
HOURS = list(range(1, 25))
STORM = ("scs_type2", 150.0)
# the demo datasets' rule for synthetic terrain: the sea (stage 0 m) along the sea edge, walls elsewhere
BOUNDARY = boundary_string({"terrain": {"source": "synthetic", "count": 1, "sea_edge": "left"}, "sea_level_m": 0.0}, 0)
CSI_M = 0.1
# How the network covers a DEM larger than its training maps (piff.inference.predict.inference_plan):
# the whole DEM with self-attention in windows of the training map size (piff predict's default)
# or over the whole DEM, or overlapping tiles of the training map size.
INFERENCE = {
    "windows": lambda trained: {"attention": "windows"},
    "global": lambda trained: {"attention": "global"},
    "tiled": lambda trained: {"tile": tuple(trained.meta["grid_shape"])},
}


class Solver:
    """The compiled solver on one DEM: ``truth`` (hourly depth (24, n, n) [m]) from the untimed
    compile warm-up, then ``timed()`` = the wall time (s) of one more 24-h event."""

    def __init__(self, terrain, rain):
        self.run = lambda: simulate(terrain.elevation, DX, rain, boundaries=BOUNDARY, compile=True)
        self.truth = self.run().depth[0, 1:]  # compilation (and one event) not timed

    def timed(self) -> float:
        t0 = time.perf_counter()
        self.run()
        return time.perf_counter() - t0


def skill(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mean per-map MAE [m], pooled CSI at CSI_M) of (24, n, n) maps."""
    mae = float(np.mean([M.mae(p, t) for p, t in zip(pred, truth)]))
    sums = {k: v.sum() for k, v in M.pooled_sums(pred, truth, thresholds=(CSI_M,)).items()}
    return mae, float(M.pooled_scores(sums, thresholds=(CSI_M,))[f"csi_pooled@{CSI_M:g}"])


def held_out(model_path: Path) -> dict:
    """{nfe: {terrain: (MAE m, pooled CSI@0.1)}} of the demo test set, from metrics.json beside the model."""
    try:
        data = json.loads(model_path.with_name(default_nfe.METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {int(n): {t: (g["all"]["mae"], g["all"].get(f"csi_pooled@{CSI_M:g}")) for t, g in by_t.items()}
            for n, by_t in data["metrics"].items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "results" / "phy" / "model.pt")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 5, 10])
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the one-map time (median)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="back-to-back solver / model timings at the default NFE (median of the ratios)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    ap.add_argument("--inference", nargs="+", choices=list(INFERENCE), default=["windows"],
                    help="how the network covers the DEM (default: piff predict's default, windows); the first "
                         "is timed in pairs with the solver, the others once")
    ap.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["auto"],
                    help="the network's arithmetic (piff predict --precision; default auto: bf16 where the CPU has "
                         "it natively); each --inference mode runs at each")
    ap.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md untouched")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trained = load_trained(args.model)
    chosen = default_nfe.recorded(args.model, str(trained.meta.get("fingerprint", "")))
    nfes = sorted(set(args.nfe) | ({chosen} if chosen else set()))
    scores = held_out(args.model)
    rain = hyetograph(*STORM, 24)

    rows = []
    headline = chosen if chosen in nfes else min(nfes)  # the NFE timed in pairs
    for n in args.sizes:
        terrain = synthetic_lowland(n, DX, seed=100 + n, sea_edge="left")
        solver = Solver(terrain, rain)
        solver_s = None
        for mode, precision in itertools.product(args.inference, args.precision):
            options = {**INFERENCE[mode](trained), "precision": precision}

            def predict(hours, nfe, terrain=terrain, options=options):
                return P.predict_maps(trained, terrain, rain, hours, nfe=nfe, sampler="euler", boundary=BOUNDARY,
                                      **options)

            def model_times(nfe, predict=predict):
                """(one map: median of --repeats, s; all 24 maps in one call, s; the 24 maps)"""
                one = median_time(lambda: predict([12], nfe), args.repeats, warmup=False)
                t0 = time.perf_counter()
                day = predict(HOURS, nfe)
                return one, time.perf_counter() - t0, day

            attrs = predict([12], 1).attrs  # warm-up: allocator, oneDNN kernel choice
            plan = (attrs["inference"] + ("" if attrs["inference"] == "tiled" else f", {attrs['attention']} attention")
                    + f", {attrs['precision']}")
            paired = solver_s is None  # the first combination's default NFE is timed in pairs with the solver
            if paired:
                pairs = []  # (solver s, one map s, 24 maps s), each triple timed back to back
                for _ in range(max(1, args.pairs)):
                    pair_solver_s = solver.timed()
                    one, day_s, headline_day = model_times(headline)
                    pairs.append((pair_solver_s, one, day_s))
                solver_s = float(np.median([p[0] for p in pairs]))
                print(f"{n}x{n}: solver (compiled) {', '.join(f'{p[0]:.1f}' for p in pairs)} s for 24 h", flush=True)
            for nfe in nfes:
                if nfe == headline and paired:
                    day = headline_day  # the maps of the last pair, not of the NFE timed before this one
                    one, day_s = (float(np.median([p[i] for p in pairs])) for i in (1, 2))
                    by_map, by_day = ([p[0] / p[i] for p in pairs] for i in (1, 2))
                    speed = (f"{np.median(by_map):.0f}x ({min(by_map):.0f}-{max(by_map):.0f})",
                             f"{np.median(by_day):.1f}x ({min(by_day):.1f}-{max(by_day):.1f})")
                else:
                    one, day_s, day = model_times(nfe)
                    speed = (f"{solver_s / one:.0f}x", f"{solver_s / day_s:.1f}x")
                assert day.attrs["nfe"] == nfe, f"scoring maps of NFE {day.attrs['nfe']} as NFE {nfe}"
                mae, csi = skill(day["depth_mean"].values, solver.truth)
                demo = scores.get(nfe, {})
                held = " / ".join(f"{100 * demo[t][0]:.2f} cm, {demo[t][1]:.3f}" if t in demo else "n/a"
                                  for t in ("seen", "unseen"))
                mark = " (default)" if nfe == chosen else ""
                rows.append(f"| {n}x{n} | {nfe}{mark} | {plan} | {solver_s:.1f} s | {one:.3f} s | {day_s:.2f} s | "
                            f"{speed[0]} | {speed[1]} | {100 * mae:.2f} cm, {csi:.3f} | {held} |")
                print(rows[-1], flush=True)

    device = f"CPU, {torch.get_num_threads()} torch threads"
    native = "yes, AMX or AVX-512 BF16" if native_bf16("cpu") else "no, this CPU lacks AMX and AVX-512 BF16"
    model_name = args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model
    body = (
        f"{device} for the solver and the model alike; the solver in float32, the model in the arithmetic the "
        f"inference column names (bfloat16 autocast where the CPU computes it natively: {native}). "
        f"Model: `{model_name}` "
        f"(kind {trained.kind}, step {trained.meta.get('step')}, trained on {trained.meta['grid_shape'][0]}x"
        f"{trained.meta['grid_shape'][1]} maps; measured default NFE {chosen or 'none recorded'}). "
        f"Case: a synthetic lowland of n x n cells at {DX:g} m never trained on (seed 100 + n), a 24-h "
        f"{STORM[0]} storm of {STORM[1]:g} mm, sea on the left edge. Solver: compiled fast path, compile "
        f"not timed. One map: hour 12, median of {args.repeats}; 24 maps: one call. At NFE {headline} the "
        f"solver event, the one map and the 24 maps were timed in {max(1, args.pairs)} back-to-back pairs: times "
        "are medians, speed-ups the median (range) of the pairs' ratios; other NFEs: timed once, against the "
        "median solver time. Prediction "
        "times include the prior. Skill here: MAE and pooled CSI@0.1 of the 24 predicted maps against the "
        "solver on this DEM; held-out: the model's demo test set at that NFE (metrics.json), seen / unseen terrain.\n\n"
        "| DEM | NFE | inference | solver, 24 h | model, 1 map | model, 24 maps | speed-up, 1 map | "
        "speed-up, 24 maps | skill here (MAE, CSI@0.1) | held-out seen / unseen (MAE, CSI@0.1) |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---|---|\n" + "\n".join(rows)
        + "\n\nTargets (issue 14): at 256x256 and the default NFE, >= 100x for one map and >= 10x for all 24 "
          "maps; the ratio at 512x512 no lower than at 256x256.")
    if not args.no_write:
        write_section("predict-trained", "Operational prediction with the trained `phy` model: speed and skill "
                      "against the solver", body)


if __name__ == "__main__":
    main()
