"""Snakemake adapter: one trained experiment on every rainfall member (the piff predict pipeline)."""
import json

import torch

from piff import cf, logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import model_members

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    torch.set_num_threads(snakemake.threads)
    ds = model_members(snakemake.input.model, snakemake.input.dataset, snakemake.input.rain,
                       json.loads(snakemake.params.cfg), experiment=snakemake.wildcards.experiment)
    cf.write_netcdf(ds, snakemake.output[0])
