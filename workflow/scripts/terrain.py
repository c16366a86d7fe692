"""Snakemake adapter: make one DEM of a dataset (piff.data.preprocess.make_terrain)."""
import json

from piff import logs
from piff.data import preprocess
from piff.hydro.terrain import write_dem

with logs.to_file(snakemake.log[0]):
    terrain = preprocess.make_terrain(json.loads(snakemake.params.terrain), int(snakemake.wildcards.dem))
    write_dem(terrain, snakemake.output[0])
