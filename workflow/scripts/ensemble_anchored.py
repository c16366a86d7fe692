"""Snakemake adapter: one trained experiment's ensemble anchored on the solver's control run
(piff.evaluation.ensemble_runs.anchored_model_members; piff.inference.anchoring)."""
import json

import torch

from piff import cf, logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import anchored_model_members

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    torch.set_num_threads(snakemake.threads)
    ds = anchored_model_members(snakemake.input.model, snakemake.input.dataset, snakemake.input.rain,
                                json.loads(snakemake.params.cfg), experiment=snakemake.wildcards.experiment)
    cf.write_netcdf(ds, snakemake.output[0])
