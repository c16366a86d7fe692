"""Snakemake adapter: compare every experiment's metrics in one table."""
from piff import logs
from piff.evaluation.summary import write_summary

with logs.to_file(snakemake.log[0]):
    write_summary(snakemake.input.metrics, snakemake.output.csv, snakemake.output.md)
