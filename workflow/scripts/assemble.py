"""Snakemake adapter: join terrain, storms, simulations and SPM into data/<dataset>/dataset.nc."""
import json

from piff import logs
from piff.atomic import check_outputs
from piff.data import format as fmt
from piff.data import preprocess


def per_dem(files, n_chunks):
    return [files[i:i + n_chunks] for i in range(0, len(files), n_chunks)]


with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    n = snakemake.params.n_chunks
    ds = preprocess.assemble(snakemake.input.dems, snakemake.input.storms, per_dem(snakemake.input.sims, n),
                             snakemake.input.spm, list(snakemake.input.priors),
                             json.loads(snakemake.params.cfg), snakemake.wildcards.dataset)
    fmt.write_netcdf(ds, snakemake.output[0])
