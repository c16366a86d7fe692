"""bench/gpu.sh and bench/gpu.py on a CPU: the --smoke run gives a number for every part, and
without a CUDA device the plain run stops with one clear line.

A fake ``nvidia-smi`` that fails stands in for a machine without a GPU, so these tests behave
the same on a machine that has one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_utils import load_bench

REPO = Path(__file__).resolve().parents[1]
PARTS = ("train-step", "ddp", "sample", "solver")


def no_gpu_env(tmp_path: Path) -> dict:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    return {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PYTHON": sys.executable,
            "OUT": str(tmp_path / "out"), "CUDA_VISIBLE_DEVICES": ""}


def test_without_cuda_the_plain_run_stops_with_one_line(tmp_path):
    proc = subprocess.run(["bash", "bench/gpu.sh"], cwd=REPO, env=no_gpu_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--smoke" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smoke_run_gives_a_number_for_every_part(tmp_path):
    proc = subprocess.run(["nice", "-n", "19", "bash", "bench/gpu.sh", "--smoke"], cwd=REPO,
                          env=no_gpu_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no CUDA device" in proc.stdout
    out = tmp_path / "out"
    data = json.loads((out / "gpu.json").read_text())
    assert data["smoke"] is True and data["machine"]["device"] == "cpu"
    for part in PARTS:
        entry = data["parts"][part]
        assert entry["status"] == "ok" and entry["device"].startswith("CPU")
        assert entry["figures"], part
        assert all(isinstance(f["value"], float) and math.isfinite(f["value"]) for f in entry["figures"]), part
    whats = [f["what"] for f in data["parts"]["ddp"]["figures"]]
    assert any("piff.training under torchrun" in w for w in whats)  # the real trainer ran
    assert any(w.startswith("DDP (gloo") for w in whats)  # and the step in DDP
    md = (out / "gpu.md").read_text()
    assert all(f"| {part} | ok |" in md for part in PARTS)
    assert "all parts passed" in (out / "gpu.log").read_text()


def test_report_marks_a_part_that_timed_out(tmp_path):
    gpu = load_bench("gpu")
    gpu.main(["report", "--device", "cpu", "--out", str(tmp_path), "solver=124", "sample=1"])
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["parts"]["solver"]["status"] == "timed out"
    assert data["parts"]["sample"]["status"] == "failed (exit 1)"
    assert "| solver | timed out | (no figures) |" in (tmp_path / "gpu.md").read_text()


def test_the_ablation_script_without_cuda_stops_with_one_line(tmp_path):
    proc = subprocess.run(["bash", "bench/gpu_ablation.sh", "unet", "0"], cwd=REPO, env=no_gpu_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--smoke" in lines[0]


@pytest.mark.slow
def test_the_ablation_script_smoke_run_trains_and_scores_each_variant_and_seed(tmp_path):
    """bench/gpu_ablation.sh --smoke: the tiny dataset built by the workflow's functions, then two
    variants x two seeds trained for 6 steps on the CPU and scored; each run's files come back."""
    env = {**no_gpu_env(tmp_path), "WORK": str(tmp_path / "work"), "NFE": "1 2", "JOBS": "2",
           "DATA_LIMIT": "300", "ABLATION_LIMIT": "480"}
    proc = subprocess.run(["bash", "bench/gpu_ablation.sh", "--smoke",
                           "unet,x0_residual_l1_phy_anchored80_symmetry", "0", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out" / "ablation"
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["unet-seed0", "unet-seed1", "x0_residual_l1_phy_anchored80_symmetry-seed0",
                    "x0_residual_l1_phy_anchored80_symmetry-seed1"]
    for run in runs:
        metrics = json.loads((out / run / "metrics.json").read_text())
        assert metrics["model_fingerprint"], run
    assert "=== ablation: exit 0" in (out / "ablation.log").read_text()
    # the dataset's name is recorded: a second call on a warm device machine (which keeps /tmp) reuses it
    assert (tmp_path / "work" / "data" / "name").read_text().strip() == "smoke"
