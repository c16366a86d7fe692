"""Snakemake adapter: compare every experiment's metrics in one table."""
from piff import logs
from piff.atomic import check_outputs
from piff.evaluation.summary import write_summary

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    write_summary(snakemake.input.metrics, snakemake.output.csv, snakemake.output.md)
