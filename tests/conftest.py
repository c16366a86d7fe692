"""Shared fixtures: a tiny real dataset (solver ground truth, SPM, coarse prior) built once, and
a real model trained on it for a few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from piff.data.preprocess import SMOKE_DATASET, build_dataset_in

# One thread for the whole session: switching torch between 1 and 2 threads inside one process
# slows later torch code several-fold on this 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """2 DEMs of 16x16 cells, 6 storms of 6 hours: seconds to build, enough to train on."""
    return build_dataset_in(tmp_path_factory.mktemp("tiny_dataset"), SMOKE_DATASET)


@pytest.fixture(scope="module")
def model_path(tiny_dataset, tmp_path_factory):
    """A real model.pt: 4 optimiser steps on the 16x16, 20 m tiny dataset (~10 s)."""
    work = tmp_path_factory.mktemp("model")
    hparams = {"steps": 4, "batch_size": 4, "microbatch": 4, "ckpt_every": 4, "log_every": 4, "warmup_steps": 1,
               "seed": 1}
    cmd = [sys.executable, "-m", "piff.training", "--hparams", json.dumps(hparams), "--dataset", str(tiny_dataset),
           "--workdir", str(work), "--out", str(work / "model.pt"), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work / "model.pt"


@pytest.fixture(scope="module")
def trained(model_path):
    """The model.pt of ``model_path``, loaded for inference."""
    from piff.model.trained import load_trained

    return load_trained(model_path)
