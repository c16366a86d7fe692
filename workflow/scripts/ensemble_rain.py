"""Snakemake adapter: rainfall-forecast members of the held-out storms, or of the validation storms
(params.validation: the anchored dressing's cases; piff.hydro.rain_ensemble)."""
import json

from piff import cf, logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import rain_members_dataset

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    cf.write_netcdf(rain_members_dataset(snakemake.input.dataset, json.loads(snakemake.params.cfg),
                                         validation=bool(snakemake.params.validation)), snakemake.output[0])
