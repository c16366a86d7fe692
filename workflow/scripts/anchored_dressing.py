"""Snakemake adapter: fit the error dressing of a trained experiment's anchored members on forecast
members of the validation storms, given the solver's (shared) runs of them."""
import json

import torch

from piff import logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import fit_anchored_dressing

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    torch.set_num_threads(snakemake.threads)
    i = snakemake.input
    fit_anchored_dressing(i.model, i.dataset, i.rain, i.solver, i.solver_control,
                          json.loads(snakemake.params.cfg)).write(snakemake.output[0])
