"""``torchrun --standalone --nproc-per-node=N -m piff.training --hparams JSON ...``: the same as
``piff train`` on every rank (torchrun starts a module, not a sub-command)."""
import sys

from piff.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
