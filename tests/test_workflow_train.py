"""Training through Snakemake: --forcerun train retrains from step 0, a killed workflow resumes
on a plain rerun, and the result equals the uninterrupted model bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from piff.training.checkpoint import load_checkpoint
from workflow_utils import SNAKEFILE, TINY_DATASET, jobs_run, snakemake, write_config

pytestmark = pytest.mark.slow

EXPERIMENT = {"dataset": "tiny", "model": "tiny", "steps": 30, "ckpt_every": 6, "batch_size": 4, "microbatch": 4,
              "log_every": 3, "warmup_steps": 2, "use_physics": True, "nfe": [1, 2]}


def weights(path):
    p = load_checkpoint(path)
    return {**{f"net.{k}": v for k, v in p["net"].items()}, **{f"ema.{k}": v for k, v in p["ema"]["shadow"].items()}}


def test_forcerun_kill_and_rerun_through_snakemake(tmp_path):
    cfg = write_config(tmp_path, {"datasets": {"tiny": TINY_DATASET}, "experiments": {"t": EXPERIMENT}})
    snakemake(tmp_path, "results/t/model.pt", configfile=cfg)
    reference = weights(tmp_path / "results/t/model.pt")

    # --forcerun train: a fresh run from step 0, killed (the whole process tree) mid-way
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
           "--cores", "2", "--nolock", "--forcerun", "train", "results/t/model.pt", "--configfile", str(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpt = tmp_path / "results/t/checkpoints/ckpt_0000012.pt"
    deadline = time.monotonic() + 600
    while not ckpt.exists():
        assert proc.poll() is None, "the workflow ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log = (tmp_path / "results/t/logs/train.log").read_text()
    # (Snakemake starts each job with an empty log file)
    assert "fresh run" in log and "resuming" not in log, "--forcerun must start again from step 0"
    assert any(p.name.startswith("checkpoints.") for p in (tmp_path / "results/t").iterdir())
    assert not (tmp_path / "results/t/model.pt").exists()

    # a plain rerun of the target resumes and ends with the same weights as the first run
    rerun = snakemake(tmp_path, "results/t/model.pt", configfile=cfg)
    assert jobs_run(rerun).get("train") == 1
    assert "resuming from" in (tmp_path / "results/t/logs/train.log").read_text()
    resumed = weights(tmp_path / "results/t/model.pt")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)

    # and the rest of the chain runs on the resumed model
    snakemake(tmp_path, "results/t/samples.nc", configfile=cfg)
    assert (tmp_path / "results/t/samples.nc").exists()
