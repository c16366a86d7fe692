"""Benchmark the flood solver: its fast path against the previous solver and against landlab.

Case: 24-h storms on a smooth synthetic lowland (2 m tilt across the domain, undulations of
+-0.8 m, two ponds 1-1.5 m deep), 20 m cells, closed edges, Manning n = 0.03, float32, alpha 0.5.
Two storms of 300 mm: uniform (12.5 mm/h every hour) and peaked (a triangle peaking at hour 8).

For every grid size (n x n cells) and torch thread count, both solvers run with compile=True:

- old: piff.hydro.solver of revision --baseline, read with `git show` (default c05d808, the
  solver before issue 13 item 3: one compiled step per Python call, pow in the friction term);
- new: this checkout (a whole output interval per compiled call, see docs/hydrology.md "Cost"),

each "one by one" (one storm per call, as the demo's simulate jobs used to run) and "batched"
(both storms in one call, each with its own time step). Times per storm: CPU (user + sys of this
process and its children) and wall, after a warm-up call that compiles (its time is reported as
the compile time; it includes one hour of stepping). landlab OverlandFlow runs the uniform storm
with its default alpha 0.7 (one-off, threads do not apply). Targets (2-core CPU, issue 13):
256 x 256, uniform storm, 2 threads, compiled no slower than 1.2 x 9.5 s and >= 6 x faster
than landlab.

    python bench/solver.py                      # full: 64 128 256, threads 1 2, landlab (~15 min on 2 cores)
    python bench/solver.py --quick              # smoke test, 1-2 min: 64 only, 6 hours, 1 thread, no
                                                # landlab, prints only (docs/benchmarks.md untouched)
    python bench/solver.py --sizes 64 --threads 1 --no-baseline --no-write   # the new path alone

Run it on an otherwise idle machine: wall times of concurrent runs mean little (CPU times hold up
better, but not fully: the cores share caches).
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piff.hydro import solver as new_solver  # noqa: E402
from piff.hydro.reference_solvers import run_landlab_overland  # noqa: E402

DX = 20.0
BASELINE = "c05d808"  # the solver before the fast path (issue 13 item 3)
REPO = Path(__file__).resolve().parents[1]


def storms(hours: int) -> np.ndarray:
    """(2, hours) mm/h: 300 mm over 24 h uniform, and the same total as a triangle peaking at
    hour 8 (both cut at ``hours``)."""
    t = np.arange(24) + 0.5
    peaked = np.where(t < 8, t / 8, (24 - t) / 16)
    peaked *= 300.0 / peaked.sum()
    return np.stack([np.full(24, 300.0 / 24), peaked])[:, :hours]


def lowland(n: int) -> np.ndarray:
    """The benchmark DEM (m) on an n x n grid; same landscape at every size."""
    y, x = np.mgrid[0:n, 0:n] / n
    return (2.0 * x + 0.8 * np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y)
            - 1.5 * np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.01)
            - 1.0 * np.exp(-((x - 0.7) ** 2 + (y - 0.3) ** 2) / 0.02))


def nse(pred, ref) -> float:
    return float(1.0 - np.sum((pred - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))


def load_solver(rev: str):
    """piff.hydro.solver as of git revision ``rev``, imported as its own module (it uses the rest
    of this checkout's package: errors, boundary, continuity, units)."""
    source = subprocess.run(["git", "show", f"{rev}:src/piff/hydro/solver.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / f"solver_{rev}.py"
    path.write_text(source)
    name = f"piff_solver_{rev}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn):
    c0, w0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return out, cpu_seconds() - c0, time.perf_counter() - w0


def bench_path(module, z, rain) -> dict:
    """One solver (compile=True) on the storms ``rain`` (S, T): compile, one by one, batched."""
    run = lambda r: module.simulate(z, DX, r, compile=True)
    S = rain.shape[0]
    row = {}
    (_, row["compile_cpu"], row["compile_wall"]) = timed(lambda: (run(rain[:1, :1]), run(rain[:, :1])))
    first = None
    cpu = wall = 0.0
    for s in range(S):
        res, c, w = timed(lambda s=s: run(rain[s]))
        cpu, wall = cpu + c, wall + w
        first = first or (res, w)
    row["one_cpu"], row["one_wall"] = cpu / S, wall / S
    batched, c, w = timed(lambda: run(rain))
    row["batch_cpu"], row["batch_wall"] = c / S, w / S
    row["compiled"] = batched.settings["compiled"]
    row["result"], row["first_wall"] = batched, first[1]
    row["steps_one"] = first[0].n_steps
    return row


def bench_size(n, threads, hours, baseline, landlab) -> dict:
    z = lowland(n)
    rain = storms(hours)
    torch.set_num_threads(threads)
    torch._dynamo.reset()  # compiled kernels are specialised on the thread count
    row = {"n": n, "threads": threads, "new": bench_path(new_solver, z, rain)}
    if baseline is not None:
        row["old"] = bench_path(baseline, z, rain)
        row["max_diff_m"] = float(np.abs(row["new"]["result"].depth - row["old"]["result"].depth).max())
    res = row["new"]["result"]
    row["residual"] = max(abs(m["relative_residual"]) for m in res.mass_balance)
    row["peak_m"] = float(res.depth[0, -1].max())
    if landlab:
        (ref, _), _, row["landlab_wall"] = timed(lambda: run_landlab_overland(z, DX, rain[0]))
        row["nse_landlab"] = nse(res.depth[0, -1], ref[-1])
    return row


def _s(x) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def format_tables(rows, hours, baseline_rev) -> str:
    have_old = any("old" in r for r in rows)
    lines = [f"Two {hours}-h storms (uniform and peaked, 300 mm in 24 h), synthetic lowland, dx {DX:g} m, closed "
             f"edges, n 0.03, float32, alpha 0.5, compile=True. Per storm: CPU s (user + sys) / wall s. "
             f"*one by one*: one storm per call; *batched*: both storms in one call (each its own time step). "
             f"*compile*: first call of each shape, incl. one hour of stepping."
             + (f" *old*: the solver of revision {baseline_rev}; *speed-up*: old / new CPU time, one by one."
                if have_old else ""), "",
             "| grid | threads | steps | new: one by one | new: batched | new: compile |"
             + (" old: one by one | old: batched | old: compile | speed-up | max abs(new - old) depth m |"
                if have_old else ""),
             "|---|---|---|---|---|---|" + ("---|---|---|---|---|" if have_old else "")]
    for r in rows:
        new = r["new"]
        cells = [f"{r['n']}x{r['n']}", str(r["threads"]), str(new["steps_one"])]
        for p in ("new", "old") if "old" in r else ("new",):
            x = r[p]
            if not x["compiled"]:
                cells += ["compile failed"] * 3
                continue
            cells += [f"{_s(x['one_cpu'])} / {_s(x['one_wall'])}", f"{_s(x['batch_cpu'])} / {_s(x['batch_wall'])}",
                      f"{_s(x['compile_cpu'])} / {_s(x['compile_wall'])}"]
        if "old" in r:
            cells += [f"{r['old']['one_cpu'] / new['one_cpu']:.1f}x", f"{r['max_diff_m']:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    with_ll = [r for r in rows if "landlab_wall" in r]
    if with_ll:
        lines += ["", f"Against landlab OverlandFlow (alpha 0.7), uniform storm, {hours} h, wall s: the new solver "
                      "one storm per call, after compilation.", "",
                  "| grid | threads | new s | landlab s | landlab / new | NSE vs landlab (last hour) | mass residual "
                  "| peak depth m |", "|---|---|---|---|---|---|---|---|"]
        for r in with_ll:
            w = r["new"]["first_wall"]
            lines.append(f"| {r['n']}x{r['n']} | {r['threads']} | {_s(w)} | {_s(r['landlab_wall'])} | "
                         f"{r['landlab_wall'] / w:.1f}x | {r['nse_landlab']:.3f} | {r['residual']:.1e} | "
                         f"{r['peak_m']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="grid sizes n (n x n cells)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts")
    parser.add_argument("--hours", type=int, default=24, help="storm hours simulated (default 24)")
    parser.add_argument("--baseline", default=BASELINE, metavar="REV",
                        help=f"git revision of the old solver (default {BASELINE})")
    parser.add_argument("--no-baseline", action="store_true", help="skip the old solver")
    parser.add_argument("--no-landlab", action="store_true", help="skip the landlab reference runs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: --sizes 64 --threads 1 --hours 6 --no-landlab --no-write")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.threads, args.hours, args.no_landlab, args.no_write = [64], [1], 6, True, True
    baseline = None if args.no_baseline else load_solver(args.baseline)
    rows = []
    for n in args.sizes:
        for k, threads in enumerate(args.threads):
            landlab = not args.no_landlab and k == len(args.threads) - 1  # once per size, with the most threads
            rows.append(bench_size(n, threads, args.hours, baseline, landlab))
            print({k: v for k, v in rows[-1].items() if k not in ("new", "old")},
                  {p: {k: v for k, v in rows[-1][p].items() if k != "result"} for p in ("new", "old") if p in rows[-1]},
                  flush=True)
    table = format_tables(rows, args.hours, args.baseline)
    print(table)
    if not args.no_write:
        write_section("solver", "Flood solver: fast path vs the previous solver, and vs landlab OverlandFlow", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
