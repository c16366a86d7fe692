"""The ``piff`` command line.

Each sub-command lives in its own module under ``piff.commands`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily so that
``piff --help`` stays fast and a broken optional dependency only affects its command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from piff import __version__
from piff.errors import PiffInputError

# name -> (module, one-line help)
COMMANDS = {
    "simulate": ("piff.commands.simulate", "run the local-inertial flood solver on a DEM and a storm"),
    "spm": ("piff.commands.spm", "build the SPM fill-and-spill prior table for a DEM"),
    "import-png": ("piff.commands.import_png", "convert a PIFF PNG dataset folder into a piff netCDF dataset"),
    "dataset": ("piff.commands.dataset", "preprocessing steps used by the workflow (terrain, storms, simulate, spm, assemble)"),
    "train": ("piff.commands.train", "train a PIFF model (launch with torchrun for DDP)"),
    "sample": ("piff.commands.sample", "predict the test maps of a dataset at several NFE"),
    "evaluate": ("piff.commands.evaluate", "score predictions against the solver ground truth"),
    "predict": ("piff.commands.predict", "flood maps for any DEM and a rainfall forecast"),
}


def _available_commands():
    out = {}
    for name, (module, help_) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = (module, help_)
    return out


def build_parser():
    parser = argparse.ArgumentParser(prog="piff", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"piff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in _available_commands().items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except PiffInputError as err:
        print(f"piff {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
