"""The ``piff`` command line.

Each sub-command lives in its own module under ``piff.commands`` with two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen command's module is
imported, so ``piff --help`` stays fast and a broken optional dependency only affects its
own command.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings

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


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of every other piff failure (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--bins -5:10:5`` -> ``--bins=-5:10:5``: argparse takes a value that starts with ``-`` and
    a digit for an unknown option, and the user would get a confusing "expected one argument"
    instead of the option's own check."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and re.match(r"-\.?\d", argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def build_parser(command: str | None = None):
    """The parser; only ``command``'s module is imported (a broken optional dependency of one
    command must not break the others, and ``piff --help`` stays fast)."""
    parser = _Parser(prog="piff", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"piff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(module).add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings on the command line as one line, like the errors (no source line echoed)."""
    print(f"piff: warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    argv = _attach_negative_values(sys.argv[1:] if argv is None else list(argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    previous, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except PiffInputError as err:
        print(f"piff {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
