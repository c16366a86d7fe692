"""Snakemake adapter: score one experiment's samples against its dataset."""
from piff import logs
from piff.evaluation.evaluate import evaluate_files

with logs.to_file(snakemake.log[0]):
    evaluate_files(snakemake.input.samples, snakemake.input.dataset, snakemake.output.csv, snakemake.output.json)
