"""Snakemake adapter: score every ensemble against the solver on the real storms."""
from piff import logs
from piff.atomic import check_outputs
from piff.evaluation.ensemble_runs import SOLVER, write_summary

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    files = {SOLVER: snakemake.input.solver, **dict(zip(snakemake.params.systems, snakemake.input.members))}
    write_summary(snakemake.input.dataset, files, snakemake.output)
