"""Solver-anchored emulator ensembles (issue 15; docs/ensemble.md, "Anchored on a solver control run").

An emulator run on every rainfall member carries its own error e(r) = P(r) - S(r) (P the
emulator, S the solver, r the rain) into every member. On the demo that error (about 1 cm a map,
2 cm on unseen terrain) is twice the error the rain forecast brings, so no dressing of the raw
members brings the ensemble's CRPS near the solver ensemble's (docs/ensemble.md, "Why
calibration alone cannot meet the CRPS target").

Most of e(r) belongs to the terrain, not to the rain: the same valley filled too little, the
same ridge wetted too much, whichever member falls. For members r_m around a central forecast
r_c (the control), e(r_m) ~ e(r_c), so

    S(r_m) ~ S(r_c) + [P(r_m) - P(r_c)]

One solver run on the control gives the level; the emulator gives each member's departure from
it, and its error that is common to all members cancels in the difference. This is the additive
model-discrepancy correction of multi-fidelity modelling (Kennedy and O'Hagan, 2000, Biometrika
87, 1-13), with the discrepancy taken from one paired run instead of a fitted model of it; and
the "delta change" of climate-impact studies, which applies a model's change, not its level.
Depth cannot be negative, so anchored maps are clipped at 0.

Cost: one solver run and one emulator run more per ensemble. On the demo's 64 x 64 DEMs the
solver runs ten members in one batched call for ~6x the cost of one, so the anchored ensemble is
only ~5x faster than the solver ensemble (docs/ensemble.md); on larger grids the solver's cost
grows with the members and the speed-up approaches the member count.
"""

from __future__ import annotations

import numpy as np


def anchor(member_maps, model_control, solver_control) -> np.ndarray:
    """Anchored member maps [m]: ``max(0, solver_control + member_maps - model_control)``.

    member_maps : (N, ..., ny, nx) the emulator on each rain member [m].
    model_control : (..., ny, nx) the emulator on the control forecast [m]: its maps with the
        same sampler and NFE (with several bridge samples of the control, their mean).
    solver_control : (..., ny, nx) the solver on the control forecast [m].
    NaN (nodata) cells stay NaN.
    """
    members = np.asarray(member_maps, np.float64)
    model_c = np.asarray(model_control, np.float64)
    solver_c = np.asarray(solver_control, np.float64)
    if model_c.shape != solver_c.shape or members.shape[1:] != model_c.shape:
        raise ValueError(f"anchor: members {members.shape[1:]} (after the member axis), the model's control "
                         f"{model_c.shape} and the solver's control {solver_c.shape} must have one shape")
    with np.errstate(invalid="ignore"):
        out = np.maximum(solver_c + (members - model_c), 0.0)
    return out.astype(np.float32)


def solver_control(terrain, rain_mm_per_h, hours, boundary, compile: bool = True) -> np.ndarray:
    """(len(hours), ny, nx) depth [m] of the solver on the control forecast ``rain_mm_per_h``
    (T,) [mm/h] at ``hours``, NaN at nodata: piff's solver at a dataset's default settings (those
    of the demo dataset: Manning 0.03, the adaptive time step of docs/hydrology.md) through the
    simulate rule's entry point, ``boundary`` a piff.hydro.boundary spec."""
    from piff.data.preprocess import solve

    res = solve(terrain, np.asarray(rain_mm_per_h, np.float64)[None], {"compile": compile}, boundary)
    depth = np.asarray(res.depth[0])[[int(h) for h in hours]].astype(np.float32)
    depth[:, ~terrain.valid_mask()] = np.nan
    return depth
