"""A real model file trained for a few steps, for the tests that need one."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def train_tiny_model(dataset, work, **options):
    """A real model.pt in ``work``: 4 optimiser steps on ``dataset`` with ``options`` (~10 s)."""
    hparams = {"steps": 4, "batch_size": 4, "microbatch": 4, "ckpt_every": 4, "log_every": 4, "warmup_steps": 1,
               "seed": 1, **options}
    cmd = [sys.executable, "-m", "piff.training", "--hparams", json.dumps(hparams), "--dataset", str(dataset),
           "--workdir", str(work), "--out", str(work / "model.pt"), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work / "model.pt"
