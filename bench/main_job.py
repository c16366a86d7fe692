"""The main job on the embedded default config: wall time, per-stage times and the test-set
comparison of all experiments and baselines.

    python bench/main_job.py                 # runs `snakemake --cores 2` from scratch in a copy
    python bench/main_job.py --from-run . --wall-seconds 657   # summarise an existing run

The first form copies the repository's tracked files to a temporary folder, runs the whole
workflow there (nothing in ./data or ./results is touched) and times it.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_fresh(cores: int) -> tuple[Path, float]:
    work = Path(tempfile.mkdtemp(prefix="piff-main-job-"))
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, work / f)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores)], cwd=work, check=True,
                   capture_output=True)
    return work, time.monotonic() - t0


def stage_seconds(run: Path) -> dict:
    """Sum of the Snakemake benchmark wall times per rule (CPU-seconds of job time, not wall), over
    the main job's jobs only: a separate target run in the same folder afterwards (the ensemble's
    results/ensemble/benchmarks) is not counted."""
    experiments = yaml.safe_load((run / "config" / "config.yaml").read_text())["experiments"]
    tsvs = list((run / "data").glob("*/benchmarks/**/*.tsv")) + list((run / "results" / "benchmarks").glob("*.tsv"))
    for name in experiments:
        tsvs += list((run / "results" / name / "benchmarks").glob("*.tsv"))
    out = {}
    for tsv in tsvs:
        rule = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        out[rule] = out.get(rule, 0.0) + float(row["s"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--from-run", type=Path, default=None, help="a folder where the main job already ran")
    p.add_argument("--wall-seconds", type=float, default=None, help="its measured wall time")
    a = p.parse_args()
    if a.from_run is None:
        run, wall = run_fresh(a.cores)
        command = f"python bench/main_job.py --cores {a.cores}"
    else:
        run, wall = a.from_run, a.wall_seconds
        command = (f"/usr/bin/time snakemake --cores {a.cores}  # in a clean clone RUN; then: "
                   f"python bench/main_job.py --from-run RUN --wall-seconds {wall:.0f}")
    stages = stage_seconds(run)
    summary = (run / "results" / "summary.md").read_text()
    hours = json.loads((run / "results" / "phy" / "metrics.json").read_text())["hours"]
    nfe_choice = summary.split("## Default NFE of piff predict", 1)[1].split("## ", 1)[0].strip() \
        if "## Default NFE of piff predict" in summary else ""
    tables = {t: summary.split(f"## {t} terrain, storm group: all", 1)[1].split("## ", 1)[0].strip()
              for t in ("Seen", "Unseen") if f"## {t} terrain, storm group: all" in summary}
    body = (f"Whole main job (`snakemake --cores {a.cores}` on `config/config.yaml`, from an empty `data/` and "
            f"`results/`): **{wall / 60:.1f} min** wall (target <= 15 min on 2 cores).\n\n"
            "Job time per rule, summed over its jobs (s): "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(stages.items())) + ".\n\n"
            "Test maps: the held-out storms (real-like shapes, and the 180 mm total of the uniform and design "
            f"shapes) at hours {', '.join(map(str, hours))}, on the training DEMs (seen terrain) and on the "
            "held-out DEMs "
            "(unseen terrain); `maps` column = their count. Storm group `all`:\n\n"
            + "\n\n".join(f"**{t} terrain**\n\n{table}" for t, table in tables.items())
            + (f"\n\n**Default NFE of piff predict**\n\n{nfe_choice}" if nfe_choice else "")
            + "\n\nPer-group tables and the error anatomy: `results/summary.md` of the run.")
    print(body)
    write_section("main-job", "Main job: demo config, all experiments and baselines", body, command=command)


if __name__ == "__main__":
    main()
