"""Snakemake adapter: the SPM fill-and-spill table of one DEM."""
import json

from piff import logs
from piff.atomic import check_outputs
from piff.data import format as fmt
from piff.data import preprocess

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    ds = preprocess.build_spm(snakemake.input.dem, json.loads(snakemake.params.cfg), dem=int(snakemake.wildcards.dem))
    fmt.write_netcdf(ds, snakemake.output[0])
