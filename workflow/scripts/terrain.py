"""Snakemake adapter: make one DEM of a dataset (piff.data.preprocess.make_terrain)."""
import json

from piff import logs
from piff.atomic import check_outputs
from piff.data import preprocess
from piff.hydro.terrain import write_dem

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    terrain = preprocess.make_terrain(json.loads(snakemake.params.terrain), int(snakemake.wildcards.dem))
    write_dem(terrain, snakemake.output[0])
