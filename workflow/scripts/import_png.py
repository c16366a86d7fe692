"""Snakemake adapter: import a PIFF PNG dataset folder (piff.data.png_import)."""
import json

from piff import logs
from piff.data import format as fmt
from piff.data.png_import import import_png_folder

with logs.to_file(snakemake.log[0]):
    cfg = json.loads(snakemake.params.cfg)
    ds = import_png_folder(cfg["folder"], depth_full_scale_m=cfg["depth_full_scale_m"], dx=cfg["cell_size_m"],
                           test_ids=cfg["test_ids"], val_ids=cfg["val_ids"])
    fmt.write_netcdf(ds, snakemake.output[0])
