"""Run a network on a raster of any size: the whole raster at once, or overlapping tiles blended.

* **Whole domain** (:func:`predict_whole`): the raster padded at the bottom/right up to a size the
  network accepts, one call, cropped back. No seams and no cell computed twice; the network's
  group normalisation and attention then see the whole raster instead of a map of the size it
  was trained on.
* **Tiles** (:func:`predict_tiled`): windows of a fixed size (the training map size, so every
  window looks like a training map) overlap; each window's output is weighted by a separable
  Hann-like bump that is largest at the window's centre and small (but never 0) at its edges,
  and the weighted outputs are divided by the summed weights. Where a window ends, its weight
  has already faded out, so the result passes smoothly from one window to the next (no seams),
  and the weights sum to a positive number everywhere, so every cell gets a value.

Which one ``piff predict`` uses is decided in :func:`piff.inference.predict.inference_plan`.
Everything here is pure numpy (no torch, no model), so it is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np


def tile_starts(n: int, tile: int, overlap: float) -> list[int]:
    """First index of every window of length ``tile`` covering ``0 .. n-1``.

    The stride is ``round(tile * (1 - overlap))`` (at least 1); the last window is aligned to the
    end (start ``n - tile``) so no window hangs over the edge. ``n <= tile`` gives ``[0]`` (the
    caller pads the raster up to one window). ``overlap`` is the overlapping fraction of a window,
    0 <= overlap < 1.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if n <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, n - tile + 1, stride))
    if starts[-1] != n - tile:
        starts.append(n - tile)
    return starts


def blend_weights(tile) -> np.ndarray:
    """(th, tw) float64 blending weights of one window: the outer product of 1-D Hann bumps
    ``sin^2(pi (i + 0.5) / n)``.

    Sampling at cell centres (i + 0.5) keeps the smallest weight, at the window's edge cells,
    at ``sin^2(pi / (2 n)) > 0`` (about 0.01 for n = 16, 4e-5 for n = 256): a DEM edge cell that
    only one window reaches still gets that window's value, yet inside the DEM a window's edge
    contributes almost nothing next to its neighbour's centre. ``tile`` is an int or (th, tw).
    """
    th, tw = (int(tile), int(tile)) if np.ndim(tile) == 0 else (int(tile[0]), int(tile[1]))
    return np.outer(_hann(th), _hann(tw))


def _hann(n: int) -> np.ndarray:
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2


def pad_to(field: np.ndarray, shape: tuple[int, int], mode: str = "reflect") -> np.ndarray:
    """Pad the last two axes of ``field`` at the bottom/right up to at least ``shape``.

    Reflection (default) continues the terrain's texture into the padding, so the network sees
    plausible relief rather than a flat shelf (``"edge"``) or a cliff (constant); the padded
    cells are cropped away afterwards.
    """
    ny, nx = field.shape[-2:]
    py, px = max(0, shape[0] - ny), max(0, shape[1] - nx)
    if py == 0 and px == 0:
        return field
    pad = [(0, 0)] * (field.ndim - 2) + [(0, py), (0, px)]
    return np.pad(field, pad, mode=mode)


def tile_windows(shape: tuple[int, int], tile: tuple[int, int], overlap: float) -> list[tuple[int, int]]:
    """(row, col) top-left corners of the windows covering a raster of ``shape`` (after padding
    up to ``tile`` where it is smaller), row by row."""
    rows = tile_starts(max(shape[0], tile[0]), tile[0], overlap)
    cols = tile_starts(max(shape[1], tile[1]), tile[1], overlap)
    return list(product(rows, cols))


def predict_whole(fn: Callable[[dict], np.ndarray], fields: dict, shape, *, pad_mode: str = "reflect") -> np.ndarray:
    """Apply ``fn`` once to the whole raster padded (``pad_mode``) up to ``shape``, crop back.

    fn, fields : as for :func:`predict_tiled`, with a batch of one window.
    shape : (H, W) the network runs on, at least the raster's size.

    Returns ``(C..., ny, nx)`` float64.
    """
    shape = (int(shape[0]), int(shape[1]))
    ny, nx = _raster_shape(fields)
    if shape[0] < ny or shape[1] < nx:
        raise ValueError(f"window {shape} is smaller than the raster {(ny, nx)}")
    pred = np.asarray(fn({k: pad_to(np.asarray(v), shape, pad_mode)[None] for k, v in fields.items()}), np.float64)
    if pred.shape[0] != 1 or pred.shape[-2:] != shape:
        raise ValueError(f"fn returned shape {pred.shape} for one window of {shape}")
    return pred[0, ..., :ny, :nx]


def _raster_shape(fields: dict) -> tuple[int, int]:
    shapes = {f.shape[-2:] for f in fields.values()}
    if len(shapes) != 1:
        raise ValueError(f"fields must share their last two axes, got {sorted(shapes)}")
    return shapes.pop()


def predict_tiled(fn: Callable[[dict], np.ndarray], fields: dict, tile, overlap: float = 0.25, *,
                  batch_size: int = 8, pad_mode: str = "reflect",
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Apply ``fn`` window by window and blend the windows into one raster.

    fn : called with a dict of the same keys as ``fields``, each value a batch of windows
        ``(B, ..., th, tw)``; returns an array ``(B, C..., th, tw)`` (any extra axes ``C...``,
        e.g. several output channels).
    fields : name -> array ``(..., ny, nx)``; every field has the same last two axes. Fields
        smaller than a window are padded (``pad_mode``) and the output cropped back.
    tile : window size, int or (th, tw).
    overlap : overlapping fraction of neighbouring windows (0 <= overlap < 1).
    batch_size : windows per call of ``fn``.
    progress : called with the number of windows done after each call (e.g. ``tqdm.update``).

    Returns ``(C..., ny, nx)`` float64: ``sum_w weight * fn(window) / sum_w weight``.
    """
    tile = (int(tile), int(tile)) if np.ndim(tile) == 0 else (int(tile[0]), int(tile[1]))
    ny, nx = _raster_shape(fields)
    padded = {k: pad_to(np.asarray(v), tile, pad_mode) for k, v in fields.items()}
    windows = tile_windows((ny, nx), tile, overlap)
    weight = blend_weights(tile)
    total = np.zeros(padded[next(iter(padded))].shape[-2:], np.float64)
    out = None
    th, tw = tile
    for lo in range(0, len(windows), batch_size):
        chunk = windows[lo:lo + batch_size]
        batch = {k: np.stack([v[..., r:r + th, c:c + tw] for r, c in chunk]) for k, v in padded.items()}
        pred = np.asarray(fn(batch), np.float64)
        if pred.shape[0] != len(chunk) or pred.shape[-2:] != (th, tw):
            raise ValueError(f"fn returned shape {pred.shape} for {len(chunk)} windows of {tile}")
        if out is None:
            out = np.zeros(pred.shape[1:-2] + total.shape, np.float64)
        for (r, c), p in zip(chunk, pred):
            out[..., r:r + th, c:c + tw] += weight * p
            total[r:r + th, c:c + tw] += weight
        if progress is not None:
            progress(len(chunk))
    return (out / total)[..., :ny, :nx]
