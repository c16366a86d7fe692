"""``torchrun --standalone --nproc-per-node=N -m piff.training --hparams JSON ...``"""
import sys

from piff.training.train import main

sys.exit(main())
