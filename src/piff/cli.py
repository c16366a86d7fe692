"""The ``piff`` command line.

Each sub-command lives in its own module under ``piff.commands`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen command's module is
imported, so ``piff --help`` stays fast and a broken optional dependency only affects its
own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from piff import __version__
from piff.errors import PiffInputError

# name -> (module, one-line help)
COMMANDS = {
    "simulate": ("piff.commands.simulate", "run the local-inertial flood solver on a DEM and a storm"),
    "spm": ("piff.commands.spm", "build the SPM fill-and-spill prior table for a DEM"),
    "import-png": ("piff.commands.import_png", "convert a PIFF PNG dataset folder into a piff netCDF dataset"),
    "train": ("piff.commands.train", "train a PIFF model (launch with torchrun for DDP)"),
    "sample": ("piff.commands.sample", "predict the test maps of a dataset at several NFE"),
    "evaluate": ("piff.commands.evaluate", "score predictions against the solver ground truth"),
    "predict": ("piff.commands.predict", "flood maps for any DEM and a rainfall forecast"),
}


def build_parser(command: str | None = None):
    """The parser; only ``command``'s module is imported (a broken optional dependency of one
    command must not break the others, and ``piff --help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="piff", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"piff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(module).add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except PiffInputError as err:
        print(f"piff {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
