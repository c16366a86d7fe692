"""Snakemake adapter: import a PIFF PNG dataset folder (piff.data.png_import)."""
import json

from piff import logs
from piff.atomic import check_outputs
from piff.data import format as fmt
from piff.data.png_import import import_png_folder

with logs.to_file(snakemake.log[0]):
    check_outputs(snakemake.output, snakemake.input)  # before any work (piff.atomic)
    cfg = json.loads(snakemake.params.cfg)
    ds = import_png_folder(cfg["folder"], depth_full_scale_m=cfg["depth_full_scale_m"], dx=cfg["cell_size_m"],
                           test_ids=cfg["test_ids"], val_ids=cfg["val_ids"])
    fmt.write_netcdf(ds, snakemake.output[0])
