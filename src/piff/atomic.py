"""Atomic file writes: a killed job leaves either the old file or the new one, never half a file;
and the one check of an output target, made before any computation (:func:`check_output`).

The output rules (docs/architecture.md, "Errors"): the target's folder exists and is writable,
the target is not a folder or a special file (device, pipe, socket), it is none of the inputs
(same resolved path or same inode), and its extension is one of the formats the command writes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from piff.errors import PiffInputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; on success fsync it, give it the usual
    permissions (mkstemp makes 0600 files) and rename it over ``path``; on error remove it."""
    path = Path(path)
    _refuse_non_file(path, path)  # never replace a folder or a device node with a regular file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _refuse_non_file(path: Path, source) -> None:
    if path.is_dir():
        raise PiffInputError(source, f"{path} is a folder; give a file name (e.g. {path / 'out.nc'})")
    if path.exists() and not path.is_file():
        raise PiffInputError(source, f"{path} is a special file (device, pipe or socket), not a regular file")


def check_output(path, *, inputs=(), suffixes=None, option="--out", create_folder=False) -> Path:
    """Refuse an output target that cannot or must not be written, before any work is done.

    ``inputs``: the files the command reads (an output equal to one of them would destroy it);
    ``suffixes``: the extensions of the formats written (lower case, with the dot);
    ``create_folder``: make a missing folder (for targets like ``data/<name>/dataset.nc``), its
    nearest existing parent being the one that must be writable. Errors are one line naming
    ``option`` and the target."""
    text = os.fspath(path) if path is not None else ""
    if not text.strip():
        raise PiffInputError(option, "is empty; give an output file name")
    path = Path(text)
    if suffixes and path.suffix.lower() not in suffixes:
        raise PiffInputError(option, f"{path}: the extension {path.suffix or '(none)'!r} is not a format this command "
                                     f"writes; use {' or '.join(suffixes)}")
    _refuse_non_file(path, option)
    folder = path.parent
    if create_folder:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        raise PiffInputError(option, f"{path}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PiffInputError(option, f"{path}: folder {str(folder)!r} is not writable")
    for item in inputs:
        if item is None or not os.fspath(item):
            continue
        other = Path(os.fspath(item))
        same = other.resolve() == path.resolve()
        if not same and path.exists() and other.exists():
            same = os.path.samefile(path, other)
        if same:
            raise PiffInputError(option, f"{path} is also an input ({other}); writing it would destroy that input")
    return path


def check_outputs(paths, inputs=()) -> None:
    """:func:`check_output` for each output of a workflow job (Snakemake's output and input lists)."""
    for path in paths:
        check_output(path, inputs=inputs, option=os.fspath(path))
