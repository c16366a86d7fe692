"""``piff train``: one-rank training; for DDP launch ``torchrun ... -m piff.training`` with the
same arguments (the Snakemake rule does)."""
from piff.training.train import add_arguments, run  # noqa: F401
