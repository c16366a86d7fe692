"""Depth-map metrics (numpy), batched over leading dimensions.

``y`` is the reference (solver) depth and ``p`` the prediction, both in metres with shape
``(..., ny, nx)``; every metric reduces the last two axes and returns an array of the leading
shape (a float for single maps). ``valid`` (optional, broadcastable bool) restricts the cells
scored, e.g. to exclude nodata.

Conventions for empty cases (documented because they decide averages over many maps):

- NSE is NaN when the reference has no variance (or, for wet cells, when no cell is wet).
- Contingency scores at threshold ``tau`` (wet = depth >= tau): when neither map has a wet
  cell, CSI = F1 = POD = 1, FAR = 0 and bias = 1 (perfect agreement on "dry"). When the
  reference is dry but the prediction is not, POD = 1 (nothing to miss), CSI = F1 = 0, FAR = 1
  and bias = inf. When the prediction is dry but the reference is not, FAR = 0 (no false alarm).
- volume_error is 0 when both maps are dry and inf when only the reference is dry.
"""

from __future__ import annotations

import numpy as np

WET_M = 0.05  # depth [m] above which a reference cell counts as wet for the *_wet scores
THRESHOLDS_M = (0.05, 0.1, 0.3, 0.5)


def _prep(p, y, valid=None):
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    if p.shape != y.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {y.shape}")
    if p.ndim < 2:
        raise ValueError(f"depth maps need at least 2 dimensions (ny, nx), got shape {p.shape}")
    w = np.ones(p.shape, bool) if valid is None else np.broadcast_to(np.asarray(valid, bool), p.shape)
    return p, y, w


def _out(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def _sum(a, w):
    return np.where(w, a, 0.0).sum(axis=(-2, -1))


def _div(num, den, empty):
    """num / den, with ``empty`` where den == 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def mae(p, y, valid=None):
    """Mean absolute error [m] over the valid cells."""
    p, y, w = _prep(p, y, valid)
    return _out(_div(_sum(np.abs(p - y), w), w.sum(axis=(-2, -1)), np.nan))


def rmse(p, y, valid=None):
    """Root mean square error [m] over the valid cells."""
    p, y, w = _prep(p, y, valid)
    return _out(np.sqrt(_div(_sum((p - y) ** 2, w), w.sum(axis=(-2, -1)), np.nan)))


def nse(p, y, valid=None):
    """Nash-Sutcliffe efficiency 1 - sum (p - y)^2 / sum (y - mean y)^2 (1 = perfect)."""
    p, y, w = _prep(p, y, valid)
    n = w.sum(axis=(-2, -1))
    mean = _div(_sum(y, w), n, np.nan)[..., None, None]
    var = _sum((y - mean) ** 2, w)
    return _out(1.0 - _div(_sum((p - y) ** 2, w), var, np.nan) + np.where(var > 0, 0.0, np.nan))


def wet_mask(y, valid=None, wet_m: float = WET_M):
    """Reference cells deeper than ``wet_m`` (and valid): the cells of the *_wet scores."""
    wet = np.asarray(y) > wet_m
    return wet if valid is None else wet & np.asarray(valid, bool)


def contingency(p, y, tau: float, valid=None) -> dict:
    """Counts TP, FP, FN, TN at threshold ``tau`` [m] (wet = depth >= tau), as float arrays."""
    p, y, w = _prep(p, y, valid)
    pw, yw = p >= tau, y >= tau
    return {"tp": _sum(pw & yw, w), "fp": _sum(pw & ~yw, w), "fn": _sum(~pw & yw, w), "tn": _sum(~pw & ~yw, w)}


def csi(p, y, tau: float, valid=None):
    """Critical success index TP / (TP + FP + FN); 1 when both maps are dry at ``tau``."""
    c = contingency(p, y, tau, valid)
    return _out(_div(c["tp"], c["tp"] + c["fp"] + c["fn"], 1.0))


def f1(p, y, tau: float, valid=None):
    """F1 = 2 TP / (2 TP + FP + FN); 1 when both maps are dry at ``tau``."""
    c = contingency(p, y, tau, valid)
    return _out(_div(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"], 1.0))


def pod(p, y, tau: float, valid=None):
    """Probability of detection (hit rate) TP / (TP + FN); 1 when the reference is dry."""
    c = contingency(p, y, tau, valid)
    return _out(_div(c["tp"], c["tp"] + c["fn"], 1.0))


def far(p, y, tau: float, valid=None):
    """False alarm ratio FP / (TP + FP); 0 when the prediction is dry."""
    c = contingency(p, y, tau, valid)
    return _out(_div(c["fp"], c["tp"] + c["fp"], 0.0))


def bias(p, y, tau: float, valid=None):
    """Frequency bias (TP + FP) / (TP + FN): 1 when both are dry, inf when only the reference is."""
    c = contingency(p, y, tau, valid)
    pred, ref = c["tp"] + c["fp"], c["tp"] + c["fn"]
    return _out(_div(pred, ref, np.where(pred > 0, np.inf, 1.0)))


def md(p, y, valid=None):
    """PIFF's MD: |p - y| [m] at the deepest reference cell (first one on ties)."""
    p, y, w = _prep(p, y, valid)
    lead = y.shape[:-2]
    flat_y = np.where(w, y, -np.inf).reshape(lead + (-1,))
    k = np.argmax(flat_y, axis=-1)[..., None]
    diff = np.abs(p - y).reshape(lead + (-1,))
    return _out(np.take_along_axis(diff, k, axis=-1)[..., 0])


def peak_error(p, y, valid=None):
    """max p - max y [m] (positive: the prediction's peak is too high)."""
    p, y, w = _prep(p, y, valid)
    return _out(np.where(w, p, -np.inf).max(axis=(-2, -1)) - np.where(w, y, -np.inf).max(axis=(-2, -1)))


def volume_error(p, y, valid=None):
    """Relative volume error (sum p - sum y) / sum y; 0 when both are dry, inf if only y is."""
    p, y, w = _prep(p, y, valid)
    sp, sy = _sum(p, w), _sum(y, w)
    return _out(_div(sp - sy, sy, np.where(sp > 0, np.inf, 0.0)))


def all_metrics(p, y, thresholds=THRESHOLDS_M, valid=None) -> dict:
    """Every metric in one dict: mae, rmse, nse, their wet-cell versions (reference > 0.05 m),
    md, peak_error, volume_error, and csi/f1/pod/far/bias at each threshold, keyed
    ``"csi@0.1"`` etc. Values are floats for single maps, arrays for batches."""
    wet = wet_mask(y, valid)
    out = {"mae": mae(p, y, valid), "rmse": rmse(p, y, valid), "nse": nse(p, y, valid),
           "mae_wet": mae(p, y, wet), "rmse_wet": rmse(p, y, wet), "nse_wet": nse(p, y, wet),
           "md": md(p, y, valid), "peak_error": peak_error(p, y, valid), "volume_error": volume_error(p, y, valid)}
    for tau in thresholds:
        for name, fn in (("csi", csi), ("f1", f1), ("pod", pod), ("far", far), ("bias", bias)):
            out[f"{name}@{tau:g}"] = fn(p, y, tau, valid)
    return out


# --------------------------------------------------------------------------------------------
# pooled scores and error anatomy: sums per map, added over maps, scored once

# Depth bands [m] of the reference for the error anatomy: truly dry cells, then wet bands.
DRY_M = 0.005
DEPTH_BANDS_M = ((0.0, DRY_M), (DRY_M, 0.1), (0.1, 0.3), (0.3, 0.5), (0.5, np.inf))


def band_name(lo: float, hi: float) -> str:
    return "dry" if lo == 0.0 else f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">{lo:g}"


def pooled_sums(p, y, thresholds=THRESHOLDS_M, valid=None) -> dict:
    """Additive per-map sums (leading shape) from which :func:`pooled_scores` computes scores
    over all cells of many maps at once: the squared-error and moment sums of the pooled NSE,
    the contingency counts of the pooled CSI, and per reference-depth band the absolute-error
    sum, the cell count and the predicted depth sum (the error anatomy); ``false_wet``: cells
    the reference leaves below WET_M that the prediction floods above it."""
    p, y, w = _prep(p, y, valid)
    out = {"n": w.sum(axis=(-2, -1)).astype(np.float64), "sse": _sum((p - y) ** 2, w), "sy": _sum(y, w),
           "syy": _sum(y * y, w), "false_wet": _sum((y < WET_M) & (p >= WET_M), w),
           "missed_wet": _sum((y >= WET_M) & (p < WET_M), w)}
    for tau in thresholds:
        c = contingency(p, y, tau, valid)
        for k in ("tp", "fp", "fn"):
            out[f"{k}@{tau:g}"] = c[k]
    for lo, hi in DEPTH_BANDS_M:
        band = w & (y >= lo) & (y < hi)
        name = band_name(lo, hi)
        out[f"abs_err[{name}]"] = _sum(np.abs(p - y), band)
        out[f"bias[{name}]"] = _sum(p - y, band)
        out[f"n[{name}]"] = band.sum(axis=(-2, -1)).astype(np.float64)
    return out


def pooled_scores(sums: dict, thresholds=THRESHOLDS_M) -> dict:
    """Scores over all the cells whose :func:`pooled_sums` were added: ``nse_pooled`` (one NSE
    over every cell, not a mean of per-map NSEs, which nearly dry maps make noisy),
    ``csi_pooled@tau`` (from the summed contingency counts), per reference-depth band
    ``mae[band]`` and ``bias[band]`` [m] and the share of cells in it, and the false-wet and
    missed-wet fractions of all cells."""
    n = sums["n"]
    var = sums["syy"] - sums["sy"] ** 2 / np.maximum(n, 1.0)
    out = {"nse_pooled": float(1.0 - sums["sse"] / var) if var > 0 else np.nan,
           "false_wet_fraction": float(sums["false_wet"] / n) if n else np.nan,
           "missed_wet_fraction": float(sums["missed_wet"] / n) if n else np.nan}
    for tau in thresholds:
        tp, fp, fn = (sums[f"{k}@{tau:g}"] for k in ("tp", "fp", "fn"))
        out[f"csi_pooled@{tau:g}"] = float(tp / (tp + fp + fn)) if tp + fp + fn > 0 else 1.0
    for lo, hi in DEPTH_BANDS_M:
        name = band_name(lo, hi)
        cells = sums[f"n[{name}]"]
        out[f"mae[{name}]"] = float(sums[f"abs_err[{name}]"] / cells) if cells else np.nan
        out[f"bias[{name}]"] = float(sums[f"bias[{name}]"] / cells) if cells else np.nan
        out[f"share[{name}]"] = float(cells / n) if n else np.nan
    return out
