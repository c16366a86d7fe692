"""Logging set-up shared by the CLI and the workflow scripts."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at set-up: a command
    run in-process after a redirection (tests, notebooks) must not write to a closed stream."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup(level: int = logging.INFO) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # GDAL reports every failed open at INFO; piff's own one-line error says it better
    logging.getLogger("rasterio").setLevel(logging.WARNING)


@contextlib.contextmanager
def to_file(path):
    """Send logging, stdout and stderr of a workflow script to its Snakemake log file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        setup()
        try:
            yield fh
        except Exception:
            logging.getLogger("piff").exception("failed")
            raise
