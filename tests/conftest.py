"""Shared fixtures: a tiny real dataset (solver ground truth, SPM, coarse prior) built once, and
a real model trained on it for a few steps."""

from __future__ import annotations

import pytest
import torch
from model_utils import train_tiny_model

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
    return train_tiny_model(tiny_dataset, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def trained(model_path):
    """The model.pt of ``model_path``, loaded for inference."""
    from piff.model.trained import load_trained

    return load_trained(model_path)
