"""Errors for bad user input: one line that names the file (or option) and the problem."""

from __future__ import annotations

import os


class PiffInputError(ValueError):
    """Bad input: a malformed DEM, rainfall file, config, checkpoint or option.

    ``str(err)`` is a single line ``"<source>: <problem>"`` so the CLI and the workflow
    logs can show it as is.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        msg = problem if self.source is None else f"{self.source}: {problem}"
        super().__init__(" ".join(msg.split()))
