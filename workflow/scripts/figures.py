"""Snakemake adapter: the figures of one experiment."""
from piff import logs
from piff.atomic import check_outputs
from piff.evaluation.figures import make_figures

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    make_figures(snakemake.input.samples, snakemake.input.dataset, snakemake.input.metrics,
                 snakemake.output.cases, snakemake.output.error_vs_nfe, snakemake.output.error_vs_hour)
