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
from workflow_utils import SNAKEFILE, TINY_DATASET, jobs_run, snakemake, write_config

from piff.training.checkpoint import load_checkpoint

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
           "--cores", "2", "--nolock", "results/t/model.pt", "--forcerun", "train", "--configfile", str(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if os.path.realpath(p) != os.path.realpath(os.path.dirname(sys.executable)))
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


def test_wall_time_budget_with_snakemake_retries_gives_the_uninterrupted_model(tmp_path):
    """A budget shorter than the training: the run saves and exits 75, Snakemake's `retries:`
    starts it again, it resumes, and the final weights equal those of an unbudgeted run."""
    exp = {**EXPERIMENT, "steps": 120, "ckpt_every": 20, "use_physics": False}
    cfg = write_config(tmp_path, {"datasets": {"tiny": TINY_DATASET}, "experiments": {"t": exp}})
    t0 = time.monotonic()
    snakemake(tmp_path, "results/t/model.pt", configfile=cfg)
    reference = weights(tmp_path / "results/t/model.pt")
    train_s = float((tmp_path / "results/t/benchmarks/train.tsv").read_text().splitlines()[1].split("\t")[0])
    assert time.monotonic() - t0 > train_s
    (tmp_path / "results/t").rename(tmp_path / "results/t_reference")

    # about 65 % of the uninterrupted training per attempt: it needs 2 attempts, the rule allows 3
    budget_min = 0.65 * train_s / 60
    cfg = write_config(tmp_path, {"datasets": {"tiny": TINY_DATASET},
                                  "experiments": {"t": {**exp, "wall_time_budget_min": round(budget_min, 4)}}})
    proc = snakemake(tmp_path, "results/t/model.pt", configfile=cfg)
    assert "restart" in (proc.stdout + proc.stderr).lower(), "the budget never stopped the training"
    assert "resuming from" in (tmp_path / "results/t/logs/train.log").read_text()
    budgeted = weights(tmp_path / "results/t/model.pt")
    assert all(torch.equal(budgeted[k], reference[k]) for k in reference)
