"""What reliability gap a perfect model shows on the verification's storms: the floor a real
ensemble's gap is read against (docs/ensemble.md, "What 15 storms can resolve").

From a run's solver ensemble (results/ensemble/solver/members.nc, the solver on every rainfall
member): for each member count N, every one of the members past the first N in turn is taken as
the truth and the first N as the ensemble (``piff.evaluation.ensemble.perfect_model_gap``). The
truth is then exchangeable with the members by construction, so what the gap shows is sampling
alone: few independent storms, N members. Beside it, the solver ensemble's first N members against
the real truth, with the storm bootstrap's 5-95 % range (``reliability_bootstrap``). Scores only,
no timing: it may share the machine.

    python bench/reliability_floor.py --run /path/to/run --members 10 20 30
    python bench/reliability_floor.py --members-file M.nc --dataset D.nc --members 2 --no-write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from piff.data import format as fmt  # noqa: E402
from piff.evaluation import ensemble as S  # noqa: E402
from piff.evaluation import ensemble_runs as R  # noqa: E402


def floor(members_file, dataset, counts, threshold: float = 0.1) -> tuple[list[dict], str]:
    """One row per member count N: the real truth's gap and its storm-bootstrap range, and the
    perfect-model gaps over every pseudo-truth member past the first N; and the cases in words."""
    m = xr.load_dataset(members_file)
    cases = f"{m.sizes['storm']} storms x {m.sizes['dem']} DEMs x {m.sizes['time']} hours"
    with fmt.open_dataset(dataset) as ds:
        truth, valid = R.truth_and_valid(ds, m)
    mask = np.broadcast_to(valid[:, None, None], truth.shape)
    ens = np.nan_to_num(np.moveaxis(m["depth"].values, 2, 0))[:, mask]  # (members, cases)
    obs = truth[mask]
    storm_of = np.broadcast_to(m["storm"].values[None, :, None, None, None], truth.shape)[mask]
    rows = []
    for n in counts:
        if n >= ens.shape[0]:
            raise SystemExit(f"{members_file}: {ens.shape[0]} members, {n} and a pseudo-truth need {n + 1}")
        prob, event = (ens[:n] > threshold).mean(axis=0), obs > threshold
        boot = S.reliability_bootstrap(prob, event, storm_of)
        perfect = np.array([S.perfect_model_gap(ens, n, t, threshold) for t in range(n, ens.shape[0])])
        rows.append({"members": n, "real": S.reliability_gap(S.reliability(prob, event)),
                     "real_range": np.nanpercentile(boot["gap"], S.BOOTSTRAP_RANGE),
                     "perfect_median": float(np.nanmedian(perfect)),
                     "perfect_p90": float(np.nanpercentile(perfect, 90)),
                     "perfect_over_0.1": float(np.mean(perfect > 0.1)), "truths": len(perfect)})
    return rows, cases


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a run folder: results/ensemble/solver/members.nc "
                                                           "and data/demo/dataset.nc")
    ap.add_argument("--members-file", type=Path, default=None)
    ap.add_argument("--dataset", type=Path, default=None)
    ap.add_argument("--members", type=int, nargs="+", default=[10, 20, 30])
    ap.add_argument("--threshold", type=float, default=0.1, help="depth threshold [m]")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    members_file = args.members_file or (args.run / "results" / "ensemble" / R.SOLVER / "members.nc" if args.run
                                         else None)
    dataset = args.dataset or (args.run / "data" / "demo" / "dataset.nc" if args.run else None)
    if members_file is None or dataset is None:
        ap.error("give --run, or --members-file and --dataset")
    rows, cases = floor(members_file, dataset, args.members, args.threshold)
    lines = [f"Reliability gap at {args.threshold:g} m (bins with >= {S.MIN_BIN_FRACTION:.0%} of the cells), "
             f"{cases}: the solver ensemble's first N members against the real truth (5-95 % storm bootstrap), "
             "and a perfect model, each later member in turn as the truth.",
             "",
             "| members N | solver vs real truth | its 5-95 % range | perfect model: median | 90th percentile | "
             "share > 0.1 | pseudo-truths |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lo, hi = r["real_range"]
        lines.append(f"| {r['members']} | {r['real']:.3f} | {lo:.3f}-{hi:.3f} | {r['perfect_median']:.3f} | "
                     f"{r['perfect_p90']:.3f} | {r['perfect_over_0.1']:.0%} | {r['truths']} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("reliability-floor", "Reliability a perfect model shows on the verification's storms",
                      text, " ".join(["python bench/reliability_floor.py", *(argv or sys.argv[1:])]))


if __name__ == "__main__":
    main()
