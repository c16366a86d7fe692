"""Snakemake adapter: score one experiment's samples against its dataset."""
from piff import logs
from piff.atomic import check_outputs
from piff.evaluation.evaluate import evaluate_files

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    evaluate_files(snakemake.input.samples, snakemake.input.dataset, snakemake.output.csv, snakemake.output.json)
