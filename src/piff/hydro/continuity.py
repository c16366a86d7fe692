"""The discrete continuity identity (docs/architecture.md): the one definition.

For every interval ``(k-1, k]`` and every cell, the solver's saved outputs satisfy

    depth[k] - depth[k-1] = (flux_x[.., :-1] - flux_x[.., 1:] + flux_y[.., :-1, :] - flux_y[.., 1:, :]) / dx
                            + rain_mm_per_h[k] * interval_h / 1000 - loss[k]

:func:`water_balance_residual_m` returns the left side minus the right side. It is written with
slicing and arithmetic only, so it takes numpy arrays and torch tensors alike: the solver's
check, the dataset check, the physics loss and the evaluation's continuity score all call it.
``flux_x``/``flux_y`` include the boundary faces, so the divergence needs no padding and no
flux is invented at the borders.
"""

from __future__ import annotations

from piff.units import mm_to_m


def water_balance_residual_m(depth_now, depth_prev, flux_x, flux_y, rain_mm_per_h, dx, loss=None,
                             interval_h: float = 1.0):
    """Residual [m of water] of one interval, shape of ``depth_now`` (.., ny, nx).

    depth_now, depth_prev : (.., ny, nx) m at the end and the start of the interval.
    flux_x : (.., ny, nx+1), flux_y : (.., ny+1, nx) interval-integrated unit-width face
        discharge [m^2], positive towards +column / +row.
    rain_mm_per_h : scalar or (..) intensity of the interval, one value per leading index.
    dx : cell size [m], scalar or one value per leading index.
    loss : (.., ny, nx) m lost during the interval (infiltration), or None.
    interval_h : interval length [h] (1 for the hourly data).
    """
    inflow = (flux_x[..., :-1] - flux_x[..., 1:] + flux_y[..., :-1, :] - flux_y[..., 1:, :]) / _per_map(dx)
    source = inflow + _per_map(mm_to_m(rain_mm_per_h) * interval_h)  # x 1.0 is exact
    if loss is not None:
        source = source - loss
    return depth_now - depth_prev - source


def _per_map(value):
    """A scalar as it is; an array of one value per leading index broadcast over (ny, nx)."""
    return value[..., None, None] if getattr(value, "ndim", 0) > 0 else value
