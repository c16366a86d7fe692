"""Logging set-up shared by the CLI and the workflow scripts."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


def setup(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)


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
