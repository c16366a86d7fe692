"""Checkpoints that survive crashes: atomic, checksummed, fingerprinted, rotated.

Layout of ``<workdir>/checkpoints/`` (not a Snakemake output, so Snakemake never deletes it):

- ``ckpt_<step:07d>.pt``  the last ``keep`` checkpoints
- ``latest.pt``           the newest one (a hard link)
- ``RUN``                 the fingerprint of the run that owns the folder
- ``COMPLETED``           written after the final model; holds the fingerprint of that run

A checkpoint file is the checksummed envelope of :mod:`piff.model.store` around the training
state, so a truncated or corrupted file is detected and the previous checkpoint is used instead.

Resume rule (see :func:`prepare_run_dir`): an unfinished run with the same fingerprint resumes
from its newest valid checkpoint; a finished run or a changed fingerprint starts fresh and
moves the old folder aside to ``checkpoints.<timestamp>/`` (never mixed, never deleted).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from piff.atomic import atomic_write_bytes
from piff.errors import PiffInputError
from piff.model.store import load_checkpoint, serialize

log = logging.getLogger(__name__)
CKPT_RE = re.compile(r"^ckpt_(\d{7})\.pt$")
COMPLETED = "COMPLETED"
RUN_FILE = "RUN"  # fingerprint of the run that owns the folder


class CheckpointDir:
    def __init__(self, workdir, keep: int = 3):
        self.path = Path(workdir) / "checkpoints"
        self.keep = keep

    def step_files(self) -> list[Path]:
        """Checkpoint files, newest first."""
        if not self.path.is_dir():
            return []
        files = [p for p in self.path.iterdir() if CKPT_RE.match(p.name)]
        return sorted(files, key=lambda p: int(CKPT_RE.match(p.name).group(1)), reverse=True)

    def save(self, state: dict, step: int) -> Path:
        data = serialize(state)
        target = self.path / f"ckpt_{step:07d}.pt"
        atomic_write_bytes(target, data)
        self._point_latest_to(target, data)
        for old in self.step_files()[self.keep:]:
            old.unlink(missing_ok=True)
        return target

    def _point_latest_to(self, target: Path, data: bytes) -> None:
        """latest.pt = a hard link to the newest checkpoint (no second copy on disk), swapped
        in atomically; a plain copy where the file system has no hard links."""
        tmp = self.path / f".latest.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(target, tmp)
            os.replace(tmp, self.path / "latest.pt")
        except OSError:
            tmp.unlink(missing_ok=True)
            atomic_write_bytes(self.path / "latest.pt", data)

    def newest_valid(self, fingerprint: str, map_location="cpu") -> dict | None:
        """The newest checkpoint that loads, verifies and matches the fingerprint."""
        candidates = ([self.path / "latest.pt"] if (self.path / "latest.pt").exists() else []) + self.step_files()
        for path in candidates:
            try:
                state = load_checkpoint(path, map_location)
            except PiffInputError as err:
                log.warning("%s; trying the previous checkpoint", err)
                continue
            if state.get("fingerprint") != fingerprint:
                log.warning("%s: fingerprint differs from this run; ignoring it", path)
                continue
            log.info("resuming from %s (step %d)", path, state["step"])
            return state
        return None

    def completed_fingerprint(self) -> str | None:
        marker = self.path / COMPLETED
        return marker.read_text().strip() if marker.exists() else None

    def mark_completed(self, fingerprint: str) -> None:
        atomic_write_bytes(self.path / COMPLETED, (fingerprint + "\n").encode())

    def archive(self, reason: str) -> Path | None:
        """Move the folder aside (kept for inspection) so a fresh run never mixes with it."""
        if not self.path.exists():
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = self.path.with_name(f"checkpoints.{stamp}")
        n = 0
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"checkpoints.{stamp}.{n}")
        shutil.move(str(self.path), dest)
        log.info("moved old checkpoints to %s (%s)", dest, reason)
        return dest


def prepare_run_dir(ckpts: CheckpointDir, fingerprint: str) -> str:
    """Decide between resume and a fresh start (call on one rank only, before the others look).

    Returns "resume" when an unfinished run with the same fingerprint owns the folder,
    otherwise "fresh" (after moving any old folder aside and claiming a new one).
    """
    run_file = ckpts.path / RUN_FILE
    if ckpts.path.exists() and any(ckpts.path.iterdir()):
        owner = run_file.read_text().strip() if run_file.exists() else None
        if ckpts.completed_fingerprint() is not None:
            ckpts.archive("the previous run finished; retraining from step 0")
        elif owner != fingerprint:
            ckpts.archive("hyper-parameters or dataset changed")
        else:
            return "resume"
    atomic_write_bytes(run_file, (fingerprint + "\n").encode())
    return "fresh"
