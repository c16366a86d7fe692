"""Snakemake adapter: anchor a model ensemble on the solver's control run (piff.inference.anchoring)."""
from piff import cf, logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import anchored_members

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    ds = anchored_members(snakemake.input.members, snakemake.input.control, snakemake.input.solver_control)
    cf.write_netcdf(ds, snakemake.output[0])
