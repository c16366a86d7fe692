"""Benchmark the local-inertial solver (eager and torch.compile) against landlab OverlandFlow.

Case: a 24-h storm of 300 mm falling uniformly (12.5 mm/h every hour) on a smooth synthetic
lowland (2 m tilt across the domain, undulations of +-0.8 m, two ponds 1-1.5 m deep), 20 m cells,
closed edges, Manning n = 0.03, float32, alpha 0.5. landlab runs the same case with its default
alpha 0.7. Times are the median wall time of ``--repeats`` runs; the compiled time excludes the
one-off compilation, reported separately. Targets (2-core CPU): 256x256 compiled <= 30 s and
>= 3x faster than landlab.

    python bench/solver.py                      # sizes 64 128 256, 3 repeats
    python bench/solver.py --quick              # 64 only, 1 repeat (smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piff.hydro.reference_solvers import run_landlab_overland  # noqa: E402
from piff.hydro.solver import simulate  # noqa: E402

DX = 20.0
RAIN = np.full(24, 300.0 / 24)  # mm/h


def lowland(n: int) -> np.ndarray:
    """The benchmark DEM (m) on an n x n grid; same landscape at every size."""
    y, x = np.mgrid[0:n, 0:n] / n
    return (2.0 * x + 0.8 * np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y)
            - 1.5 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.01)
            - 1.0 * np.exp(-((x - 0.7) ** 2 + (y - 0.3) ** 2) / 0.02))


def nse(pred, ref) -> float:
    return float(1.0 - np.sum((pred - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))


def median_time(fn, repeats):
    times, last = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), last


def bench_size(n: int, repeats: int, landlab: bool) -> dict:
    z = lowland(n)
    row = {"n": n}
    row["eager_s"], eager = median_time(lambda: simulate(z, DX, RAIN), repeats)
    t0 = time.perf_counter()
    first = simulate(z, DX, RAIN, compile=True)
    row["compile_first_s"] = time.perf_counter() - t0
    row["compiled"] = first.settings["compiled"]
    row["compiled_s"], _ = median_time(lambda: simulate(z, DX, RAIN, compile=True), repeats)
    row["steps"] = eager.n_steps
    row["residual"] = abs(eager.mass_balance[0]["relative_residual"])
    row["peak_m"] = float(eager.depth[0, -1].max())
    if landlab:
        row["landlab_s"], (ref, _) = median_time(lambda: run_landlab_overland(z, DX, RAIN), repeats)
        row["nse_landlab"] = nse(eager.depth[0, -1], ref[-1])
    return row


def format_table(rows, threads) -> str:
    lines = [f"24-h uniform 300 mm storm, synthetic lowland, dx {DX:g} m, closed edges, n 0.03, float32, alpha 0.5; "
             f"torch threads {threads}; median wall time.", "",
             "| grid | steps | eager s | compiled s (first call incl. compile) | landlab s | landlab / compiled | "
             "NSE vs landlab (24 h) | mass residual | peak depth m |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        comp = f"{r['compiled_s']:.1f} ({r['compile_first_s']:.0f})" if r["compiled"] else "compile failed"
        ll = f"{r['landlab_s']:.1f}" if "landlab_s" in r else "-"
        ratio = f"{r['landlab_s'] / r['compiled_s']:.1f}x" if "landlab_s" in r and r["compiled"] else "-"
        nse_ = f"{r['nse_landlab']:.3f}" if "nse_landlab" in r else "-"
        lines.append(f"| {r['n']}x{r['n']} | {r['steps']} | {r['eager_s']:.1f} | {comp} | {ll} | {ratio} | {nse_} | "
                     f"{r['residual']:.1e} | {r['peak_m']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-landlab", action="store_true", help="skip the landlab reference runs")
    parser.add_argument("--quick", action="store_true", help="smoke test: --sizes 64 --repeats 1")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [64], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for n in args.sizes:
        rows.append(bench_size(n, args.repeats, landlab=not args.no_landlab))
        print(rows[-1], flush=True)
    table = format_table(rows, torch.get_num_threads())
    print(table)
    if not args.no_write:
        write_section("solver", "Flood solver: local-inertial (torch) vs landlab OverlandFlow", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
