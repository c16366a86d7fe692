"""Snakemake adapter: fit the error dressing of a trained experiment's anchored members on forecast
members of the validation storms."""
import json

import torch

from piff import logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import fit_anchored_dressing

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    torch.set_num_threads(snakemake.threads)
    fit_anchored_dressing(snakemake.input.model, snakemake.input.dataset, json.loads(snakemake.params.cfg)).write(
        snakemake.output[0])
