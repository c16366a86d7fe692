"""Snakemake adapter: dress every member of a model ensemble with the model's error dressing."""
from piff import cf, logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import dressed_members

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    ds = dressed_members(snakemake.input.members, snakemake.input.dressing, int(snakemake.params.maps))
    cf.write_netcdf(ds, snakemake.output[0])
