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

Cost: one solver run and one emulator run more per ensemble. The solver's control run and the
emulator's runs do not depend on each other: :func:`anchored_ensemble` runs them side by side when
the control run is small enough to run on one thread (piff.hydro.solver.single_threaded, every
demo DEM), the emulator on the other cores, so the ensemble waits for the longer of the two rather
than their sum (docs/ensemble.md, "Anchored on a solver control run").
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


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


def solver_control(terrain, rain_mm_per_h, hours, boundary, solver_settings: dict | None = None) -> np.ndarray:
    """(len(hours), ny, nx) depth [m] of the solver on the control forecast ``rain_mm_per_h``
    (T,) [mm/h] at ``hours``, NaN at nodata, through the simulate rule's entry point;
    ``solver_settings`` a dataset's solver settings (default: piff's, those of the demo dataset:
    Manning 0.03, the adaptive time step of docs/hydrology.md, compiled), ``boundary`` a
    piff.hydro.boundary spec."""
    from piff.data.preprocess import solve

    settings = {"compile": True} if solver_settings is None else solver_settings
    res = solve(terrain, np.asarray(rain_mm_per_h, np.float64)[None], settings, boundary)
    depth = np.asarray(res.depth[0])[[int(h) for h in hours]].astype(np.float32)
    depth[:, ~terrain.valid_mask()] = np.nan
    return depth


def runs_alongside(terrain, threads: int | None = None) -> bool:
    """Whether :func:`anchored_ensemble` runs the solver's control run beside the emulator: it
    takes one thread (a small grid, piff.hydro.solver.single_threaded) and torch has more."""
    from piff.hydro.solver import single_threaded

    threads = torch.get_num_threads() if threads is None else threads
    return threads > 1 and single_threaded(int(np.prod(terrain.shape)))


def anchored_ensemble(run_model, terrain, control_rain_mm_per_h, hours, boundary,
                      solver_settings: dict | None = None, network: torch.nn.Module | None = None
                      ) -> tuple[np.ndarray, dict]:
    """Anchored member maps [m] (:func:`anchor`) with the solver's control run made alongside the
    emulator's runs where it fits on one core (:func:`runs_alongside`).

    run_model : a function of no arguments returning ``(member_maps, model_control)`` as
        :func:`anchor` takes them: the emulator on every member and on the control. It runs in
        the calling thread, on one thread fewer than torch's while the solver has the other;
        the control run goes to a worker thread (the compiled solver releases Python's lock).
        Otherwise they run one after the other, each with every thread.
    network : the emulator's network: once the solver is done, its next call (a sampler step, a
        batch) gets every thread back, so a long emulator run (many NFE) is not held to one
        thread after the solver has finished.
    Other arguments as :func:`solver_control`.

    Returns ``(maps, timing)``: timing in seconds, ``model_s``, ``solver_control_s``, ``wall_s``
    (the whole anchored ensemble, anchoring included) and ``alongside`` (0 or 1).
    """
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    alongside = runs_alongside(terrain, threads)
    if alongside:
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                solver_run = pool.submit(_timed, _single_thread_solver_control, terrain, control_rain_mm_per_h,
                                         hours, boundary, solver_settings)
                torch.set_num_threads(threads - 1)
                hook = None if network is None else network.register_forward_pre_hook(
                    functools.partial(_threads_back_once_done, solver_run, threads))
                try:
                    (members, model_c), model_s = _timed(run_model)
                finally:
                    if hook is not None:
                        hook.remove()
                solver_c, solver_s = solver_run.result()
        finally:
            # once the worker is done: the last count set in any thread also seeds new threads' counts
            torch.set_num_threads(threads)
    else:
        (members, model_c), model_s = _timed(run_model)
        solver_c, solver_s = _timed(solver_control, terrain, control_rain_mm_per_h, hours, boundary, solver_settings)
    maps = anchor(members, model_c, solver_c)
    return maps, {"model_s": model_s, "solver_control_s": solver_s, "wall_s": time.perf_counter() - t0,
                  "alongside": int(alongside)}


def _threads_back_once_done(solver_run, threads, module, args):
    # a forward pre-hook: runs in the emulator's thread, whose thread count it sets
    if solver_run.done() and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _single_thread_solver_control(terrain, rain, hours, boundary, solver_settings):
    # torch's thread count is per thread: the worker's eager steps (hourly outputs) take one core
    torch.set_num_threads(1)
    return solver_control(terrain, rain, hours, boundary, solver_settings)


def _timed(fn, *args):
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0
