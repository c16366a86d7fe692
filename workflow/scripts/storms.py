"""Snakemake adapter: the storm table with its split (piff.data.preprocess.make_storms)."""
import json

from piff import logs
from piff.atomic import check_outputs
from piff.data import format as fmt
from piff.data import preprocess
from piff.hydro.storms import write_scenario_csv

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    storms = preprocess.make_storms(json.loads(snakemake.params.storms), json.loads(snakemake.params.split))
    fmt.write_netcdf(storms, snakemake.output.storms)
    write_scenario_csv(preprocess.storm_list(storms), snakemake.output.csv)
