"""Snakemake adapter: the reference ensemble, the solver on every rainfall member, or on the members'
central forecast (params.control: the validation members' control, for the anchored dressing's fit)."""
import json

import torch

from piff import cf, logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import solver_members

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    torch.set_num_threads(snakemake.threads)
    ds = solver_members(snakemake.input.dataset, snakemake.input.rain, json.loads(snakemake.params.cfg)["hours"],
                        control=bool(snakemake.params.control))
    cf.write_netcdf(ds, snakemake.output[0])
