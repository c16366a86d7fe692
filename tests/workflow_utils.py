"""Helpers to run the real Snakemake workflow in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"

# A dataset small enough for a unit test: 2 DEMs of 24x24 cells, 4 storms of 8 hours.
TINY_DATASET = {
    "terrain": {"source": "synthetic", "count": 2, "size": 24, "cell_size_m": 20.0, "seed": 1},
    "storms": {"shapes": ["uniform", "scs_type2"], "totals_mm": [40.0, 120.0], "hours": 8, "seed": 1},
    "simulate": {"storms_per_job": 2},
    "coarse_prior": {"enabled": True, "factor": 4},
    "split": {"test_totals_mm": [120.0]},
}


def write_config(workdir: Path, config: dict) -> Path:
    path = Path(workdir) / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: float = 900,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake`` on the repository's Snakefile inside ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--cores", "2", "--nolock"]
    cmd += list(args)
    if configfile is not None:  # last: --configfile is greedy and would swallow targets after it
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # the venv is deliberately NOT put on PATH: `.venv/bin/snakemake` must work as the README
    # runs it, without an activated venv (the Snakefile puts its own python first)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != Path(sys.executable).parent.resolve())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-8000:]}")
    return proc


def jobs_run(proc: subprocess.CompletedProcess) -> dict:
    """Job counts from Snakemake's 'Job stats' table (empty when there was nothing to do)."""
    text = proc.stdout + proc.stderr
    if "Job stats:" not in text:
        return {}
    counts = {}
    table = text.split("Job stats:", 1)[1].splitlines()
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts
