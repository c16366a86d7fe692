"""Snakemake adapter: the coarse dynamic prior of every DEM for one chunk of storms."""
import json

import torch

from piff import logs
from piff.atomic import check_outputs
from piff.data import format as fmt
from piff.data import preprocess

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    torch.set_num_threads(snakemake.threads)
    ds = preprocess.coarse_prior_chunk(list(snakemake.input.dems), snakemake.input.storms,
                                       int(snakemake.wildcards.chunk), json.loads(snakemake.params.cfg))
    fmt.write_netcdf(ds, snakemake.output[0])
