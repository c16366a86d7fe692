"""The checksummed file envelope of every model.pt and training checkpoint piff writes.

A file is ``torch.save({"format": 1, "sha256": hex, "payload": bytes})`` where ``payload`` is
itself a ``torch.save`` of the state, so a truncated or corrupted file is detected (unreadable,
or checksum mismatch) instead of loading garbage. The training loop (checkpoints) and model
loading for inference (:mod:`piff.model.trained`) both read and write through here.

Both layers are read with ``torch.load(weights_only=True)``: a model file handed to
``piff predict`` may come from anywhere, and a full unpickler would run whatever code a crafted
file names (the checksum detects damage, not tampering). What piff writes is tensors and plain
data, plus numpy arrays (the numpy RNG state in checkpoints), allowed by :data:`SAFE_GLOBALS`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from piff.errors import PiffInputError

FORMAT = 1
# Globals beyond torch's weights-only set that piff's own files need: numpy arrays and dtypes.
# (the reconstructor is taken from numpy itself: its module moved between numpy 1 and 2).
SAFE_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), np.zeros(1).__reduce__()[0]]


def serialize(state: dict) -> bytes:
    """The envelope bytes of ``state``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    out = io.BytesIO()
    torch.save({"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}, out)
    return out.getvalue()


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load and verify one envelope file; raises PiffInputError naming the file if it is damaged,
    not a piff file, or asks to run code (refused before anything of it runs)."""
    path = Path(path)
    wrapper = _safe_load(path, path)
    payload = wrapper.get("payload") if isinstance(wrapper, dict) else None
    if not isinstance(payload, bytes) or wrapper.get("format") != FORMAT:
        raise PiffInputError(path, "damaged or not a piff checkpoint (no piff envelope: format, sha256, payload)")
    if hashlib.sha256(payload).hexdigest() != wrapper.get("sha256"):
        raise PiffInputError(path, "damaged or not a piff checkpoint (checksum mismatch)")
    return _safe_load(io.BytesIO(payload), path, map_location)


def _safe_load(source, path: Path, map_location="cpu"):
    """``torch.load(weights_only=True)`` with piff's allow-list; one-line errors naming ``path``."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(source) if "Weights only load failed" in str(err) else ""
        if unsafe:
            raise PiffInputError(path, f"refused: the file asks to import {unsafe} when loaded, which piff files "
                                       "never do (a crafted or foreign file; nothing of it was run)") from None
        raise PiffInputError(path, f"damaged or not a piff checkpoint ({_first_line(err)})") from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise PiffInputError(path, f"damaged or not a piff checkpoint ({_first_line(err)})") from None


def _unsafe_globals(source) -> str:
    """The names a file would import beyond the allow-list (read without running anything)."""
    try:
        if isinstance(source, io.BytesIO):
            source.seek(0)
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
        names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(source) if n not in allowed]
        return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    except Exception:
        return ""


def _first_line(err: Exception) -> str:
    """torch's reason, first sentence of its first line only (its messages run to paragraphs)."""
    text = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
    return f"{type(err).__name__}: {text}"[:160]
