"""Shared fixtures: a tiny real dataset (solver ground truth, SPM, coarse prior) built once."""

from __future__ import annotations

import copy

import pytest
import torch

from piff.data import format as fmt
from piff.data import preprocess

# One thread for the whole session: switching torch between 1 and 2 threads inside one process
# slows later torch code several-fold on this 2-core CI machine.
torch.set_num_threads(1)

# 2 DEMs of 16x16 cells, 6 storms of 6 hours: seconds to build, enough to train on.
TRAIN_DATASET = {
    "terrain": {"source": "synthetic", "count": 2, "size": 16, "cell_size_m": 20.0, "seed": 3, "sea_edge": "left"},
    "storms": {"shapes": ["uniform", "scs_type2", "huff_q1"], "totals_mm": [60.0, 150.0], "hours": 6, "seed": 3,
               "cap_mm_per_h": 150.0},
    "boundaries": "auto",
    "sea_level_m": 0.0,
    "solver": {"manning": 0.03, "alpha": 0.5, "theta": 0.8, "dtype": "float32", "compile": False},
    "simulate": {"storms_per_job": 6},
    "coarse_prior": {"enabled": True, "factor": 4},
    "split": {"test_shapes": ["huff_q1"], "test_totals_mm": [], "val_totals_mm": []},
}


def build_dataset(folder, cfg=TRAIN_DATASET, name="tiny"):
    """The preprocessing chain of the workflow, called directly (no Snakemake)."""
    cfg = copy.deepcopy(cfg)
    dems = []
    from piff.hydro.terrain import write_dem

    for i in range(preprocess.dem_count(cfg["terrain"])):
        dems.append(write_dem(preprocess.make_terrain(cfg["terrain"], i), folder / f"dem_{i:03d}.nc"))
    storms = fmt.write_netcdf(preprocess.make_storms(cfg["storms"], cfg["split"]), folder / "storms.nc")
    sims = [[fmt.write_netcdf(preprocess.simulate_chunk(d, storms, 0, cfg), folder / f"sim_{i}.nc")]
            for i, d in enumerate(dems)]
    priors = [[fmt.write_netcdf(preprocess.coarse_prior_chunk(d, storms, 0, cfg), folder / f"prior_{i}.nc")]
              for i, d in enumerate(dems)]
    spms = [fmt.write_netcdf(preprocess.build_spm(d, cfg), folder / f"spm_{i}.nc") for i, d in enumerate(dems)]
    ds = preprocess.assemble(dems, storms, sims, spms, priors, cfg, name)
    return fmt.write_netcdf(ds, folder / "dataset.nc")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("tiny_dataset"))
