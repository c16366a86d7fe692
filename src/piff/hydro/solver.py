"""2-D local-inertial shallow-water flood solver (Bates et al. 2010 with de Almeida et al. 2012 smoothing).

Grid, sign and time conventions follow docs/architecture.md: depth ``h`` and bed ``z`` at cell
centres ``(ny, nx)``; unit-width discharges ``qx (ny, nx+1)`` (positive towards +x) and
``qy (ny+1, nx)`` (positive towards increasing row) on faces, in m^2/s.

One time step (all storms of a batch at once, each with its own dt):

1. dt = min(alpha dx / sqrt(g max h), beta dx / sqrt(g max |d eta|), max_dt), where max |d eta| is
   the largest water-surface drop across a wet face (h_f > h_dry) that the momentum equation
   updates; rounded *down* to a multiple of 2^-10 s and clipped to land exactly on the next
   output time. Multiples of 2^-10 s are exact in float32 and their float64 sums are exact, so
   every output interval integrates exactly ``output_interval_s`` seconds of rain.
   The first term is the gravity-wave CFL of Bates et al. (2010). It is not enough where friction
   dominates (shallow sheet flow on slopes): once dt exceeds the friction relaxation time
   tau = h^(4/3) / (g n^2 |u|), the semi-implicit friction maps q to about q_steady^2 / q, a
   period-2 mode damped only by ~2 tau / dt per step, which the depth feedback of the gravity and
   friction terms (~dt tau g S / dx) drives unstable once dt^2 g S / dx exceeds a constant,
   whatever the depth and roughness. A von Neumann analysis of the linearised 1-D scheme
   (theta 0.8) puts that limit at dt = 0.69 sqrt(dx / (g S)) for thin sheets; solver runs on
   kinematic-wave planes stay steady up to beta 0.6 and break down by 0.75 (a checkerboard along
   the slope, depths 20-60 % off). With S dx = |d eta| that is the second term; the default beta
   0.4 stays >= 1.26x below the analysed limit in every sub-critical case (Fr < 0.55, dx 1-100 m,
   h 1 mm-3 m, n 0.02-0.2, S 0.2-10 %) with alpha 0.5, >= 1.04x with alpha 0.7. A cap on
   dt / tau would also work but costs far more on thin sheets (tau ~ h^(2/3) -> 0), and the
   diffusive limit of Hunter et al. (2005, dt <= dx^2 / (4 D), D = h^(5/3) / (2 n sqrt(S))) is
   not the binding one here. Derivation, references and measured errors: docs/hydrology.md.
2. Momentum on every face with the old depths:
   ``q = [theta q + (1-theta)/2 (q_prev + q_next) - g h_f dt d(eta)/dx] / [1 + g dt n^2 |q| / h_f^(7/3)]``
   with ``h_f = max(eta) - max(z)`` over the two cells, q = 0 where ``h_f <= h_dry``, then the
   Froude cap ``|q| <= h_f sqrt(g h_f)``.
3. Donor-cell outflow limiter: a cell whose outgoing fluxes would take out more than the water it
   holds (plus this step's rain) has all its outgoing fluxes scaled down, so depths stay >= 0
   without ever clipping them (clipping creates water).
4. Continuity in float64 whatever the compute dtype: the face fluxes of the step (q dt, float64)
   are both applied to the float64 depth state and summed into the hour-integrated flux
   outputs, so the saved data satisfy the continuity identity of docs/architecture.md to float64
   rounding before the final cast to the output dtype. A float32 run therefore conserves mass to
   ~1e-12 of the rain volume; float32 only affects the momentum update.

Host/device synchronisation: dt and the time of each storm live on the device, so the step
function needs no host value. Compiled on a CPU (``compile=True``), the steps of an output
interval run as one compiled loop (``torch._higher_order_ops.while_loop``) that stops when every
storm reached the output time: no Python between steps. Eager, or compiled one step at a time
(``compile="step"``, the default on CUDA), the host checks whether all storms reached the output
time once every ``steps_per_sync`` steps (1 on CPU where a sync is free; 16 on CUDA, where the at
most 15 extra steps after the output time are exact no-ops: dt = 0 there). Costs and the
measurements behind these choices: docs/hydrology.md, "Cost".
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from piff.errors import PiffInputError
from piff.hydro.boundary import BoundarySpec, parse_boundaries
from piff.hydro.continuity import water_balance_residual_m
from piff.units import GRAVITY, MM_PER_M, SECONDS_PER_HOUR, mm_to_m

DT_QUANTUM_S = 2.0 ** -10  # dt is a multiple of this (exact in float32, exact float64 sums)


@dataclass
class SimulationResult:
    """Hourly (or every ``output_interval_s``) output of :func:`simulate` for S storms over one DEM.

    Arrays are numpy, float32 unless the run was float64. Index ``k`` along the time axis is
    output time ``k * output_interval_s`` (hours 0..T by default).

    depth : (S, T+1, ny, nx) m
        water depth at output time k (state).
    vx, vy : (S, T+1, ny, nx) m/s
        interval-mean cell-centre velocity over ``(k-1, k]``: the interval-integrated centre
        discharge (mean of the two face fluxes ``flux_x``/``flux_y`` around the cell) divided
        by the interval-integrated depth ``sum(h dt)``; 0 where the interval-mean depth is
        <= ``h_dry`` and at k = 0. vx positive towards +x (east), vy towards increasing row
        (south).
    flux_x : (S, T+1, ny, nx+1) m^2;  flux_y : (S, T+1, ny+1, nx) m^2
        interval-integrated unit-width face discharge, boundary faces included (0 at k = 0).
    loss : (S, T+1, ny, nx) m
        infiltration depth lost during the interval (0 at k = 0).
    rain_mm_per_h : (S, T+1)
        rainfall intensity of each interval, column 0 = 0.
    mass_balance : list of dict, one per storm (m^3, from the float64 internal state)
        rain_m3, boundary_outflow_m3 (net, out positive), loss_m3, storage_change_m3,
        residual_m3 = rain - outflow - loss - storage change, and relative_residual =
        residual / (rain + initial storage + |net boundary flow|).
    """

    depth: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    flux_x: np.ndarray
    flux_y: np.ndarray
    loss: np.ndarray
    rain_mm_per_h: np.ndarray
    mass_balance: list
    dx: float
    n_steps: int
    wall_time_s: float
    settings: dict
    elevation: np.ndarray  # (ny, nx) float32 m, NaN at nodata
    nodata_mask: np.ndarray  # (ny, nx) bool, True = wall cell outside the domain
    output_interval_s: float = SECONDS_PER_HOUR


# --------------------------------------------------------------------------------------------
# input checking


def _as_2d_raster(value, shape, name, *, allow_scalar=True, minimum=0.0) -> np.ndarray:
    """A scalar or (ny, nx) raster of finite values >= minimum, returned as a float64 raster."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0 and allow_scalar:
        arr = np.full(shape, float(arr))
    if arr.shape != tuple(shape):
        raise PiffInputError(name, f"expected a scalar or a raster of shape {tuple(shape)}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < minimum):
        raise PiffInputError(name, f"values must be finite and >= {minimum:g}")
    return arr


def _check_elevation(elevation, nodata_mask, source):
    z = np.asarray(elevation, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 1:
        raise PiffInputError(source, f"elevation must be a 2-D (ny, nx) raster, got shape {z.shape}")
    if nodata_mask is None:
        mask = np.zeros(z.shape, dtype=bool)
    else:
        mask = np.asarray(nodata_mask, dtype=bool)
        if mask.shape != z.shape:
            raise PiffInputError(source, f"nodata mask shape {mask.shape} differs from the elevation shape {z.shape}")
    bad = ~np.isfinite(z) & ~mask
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise PiffInputError(source, f"{int(bad.sum())} non-finite elevation value(s) outside the nodata mask "
                                     f"(first at row {i}, column {j})")
    if mask.all():
        raise PiffInputError(source, "every cell is nodata")
    return np.where(mask, 0.0, z), mask


def _check_rain(rain, hours, source) -> np.ndarray:
    """(S, hours) float64 mm/h; rain beyond its length is 0, longer rain is cut at ``hours``."""
    r = np.asarray(rain, dtype=np.float64)
    if r.ndim == 1:
        r = r[None, :]
    if r.ndim != 2 or r.shape[0] < 1:
        raise PiffInputError(source, f"rainfall must be (T,) or (S, T) hourly intensities, got shape {np.shape(rain)}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise PiffInputError(source, "rainfall intensities must be finite and >= 0 mm/h")
    hours = r.shape[1] if hours is None else int(hours)
    if hours < 1:
        raise PiffInputError(source, "need at least one output interval (empty rainfall and no hours given)")
    out = np.zeros((r.shape[0], hours))
    n = min(hours, r.shape[1])
    out[:, :n] = r[:, :n]
    return out


def _check_scalar(value, name, low, high=math.inf, *, low_open=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PiffInputError(name, f"{value!r} is not a number") from None
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
    if not ok:
        raise PiffInputError(name, f"{value!r} is outside {'(' if low_open else '['}{low:g}, {high:g}]")
    return v


# --------------------------------------------------------------------------------------------
# constant fields of one run (torch tensors on the run's device)


def _face_max(a: np.ndarray, axis: int) -> np.ndarray:
    """Max of the two cells on each face along ``axis``, the boundary cell replicated outside."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1)
    ap = np.pad(a, pad, mode="edge")
    lo = np.take(ap, np.arange(ap.shape[axis] - 1), axis=axis)
    hi = np.take(ap, np.arange(1, ap.shape[axis]), axis=axis)
    return np.maximum(lo, hi), lo, hi


def _open_faces(valid: np.ndarray, axis: int, lo_open: bool, hi_open: bool) -> np.ndarray:
    """1.0 on faces water may cross by the momentum equation: interior faces between two valid
    cells, plus the boundary faces of sea edges (``lo_open``/``hi_open``)."""
    _, lo, hi = _face_max(valid.astype(np.float64), axis)
    open_ = lo * hi
    first = [slice(None), slice(None)]
    last = [slice(None), slice(None)]
    first[axis], last[axis] = 0, -1
    open_[tuple(first)] *= lo_open
    open_[tuple(last)] *= hi_open
    return open_


def _build_constants(z, mask, n, spec: BoundarySpec, dx, dtype, device):
    """Tensors that stay fixed during the run: bed, face bed maxima, friction, open faces,
    sea ghost surfaces and free-outflow helpers."""
    g = GRAVITY
    valid = ~mask
    # masked (nodata) cells: bed at 0 and never wet; all their faces are closed
    t = lambda a, dt=dtype: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)
    c = {"z": t(z), "valid": t(valid.astype(np.float64), torch.float64)}
    for axis, name, (lo_edge, hi_edge) in ((1, "x", ("left", "right")), (0, "y", ("top", "bottom"))):
        zmax, _, _ = _face_max(z, axis)
        nmean = 0.5 * (_face_max(n, axis)[1] + _face_max(n, axis)[2])
        c[f"zmax_{name}"] = t(zmax)
        c[f"gn2_{name}"] = t(g * nmean ** 2)
        c[f"open_{name}"] = t(_open_faces(valid, axis, spec[lo_edge].kind == "sea", spec[hi_edge].kind == "sea"))
    ny, nx = z.shape
    edge_cells = {"left": (np.s_[:, 0], np.s_[:, 1] if nx > 1 else np.s_[:, 0], (ny, 1)),
                  "right": (np.s_[:, -1], np.s_[:, -2] if nx > 1 else np.s_[:, -1], (ny, 1)),
                  "top": (np.s_[0, :], np.s_[1, :] if ny > 1 else np.s_[0, :], (1, nx)),
                  "bottom": (np.s_[-1, :], np.s_[-2, :] if ny > 1 else np.s_[-1, :], (1, nx))}
    for edge, (cells, inner, shape) in edge_cells.items():
        cond = spec[edge]
        zb = z[cells].reshape(shape)
        if cond.kind == "sea":
            # ghost cell: bed = boundary-cell bed, surface at the stage (dry ghost if below its bed)
            c[f"sea_{edge}"] = t(np.maximum(cond.stage, zb))
        elif cond.kind == "free":
            c[f"bedslope_{edge}"] = t((z[inner] - z[cells]).reshape(shape) / dx)
            c[f"invn_{edge}"] = t(1.0 / np.maximum(n[cells], 1e-6).reshape(shape))
            c[f"validb_{edge}"] = t(valid[cells].reshape(shape).astype(np.float64))
    return c


# --------------------------------------------------------------------------------------------
# the time step


def _pad(x, lo, hi, dim):
    return torch.cat([lo, x, hi], dim)


def _free_flux(h, eta, c, edge, dim, dx, h_dry):
    """Outward free-outflow discharge magnitude at the boundary faces of ``edge``: Manning normal
    depth with the steeper of surface and bed slope towards the edge, capped at critical flow."""
    n = h.shape[dim]
    bi, ii = (0, min(1, n - 1)) if edge in ("left", "top") else (n - 1, max(n - 2, 0))
    hb = h.narrow(dim, bi, 1)
    surf_slope = (eta.narrow(dim, ii, 1) - eta.narrow(dim, bi, 1)) / dx
    slope = torch.clamp(torch.maximum(surf_slope, c[f"bedslope_{edge}"]), min=0.0)
    q = hb ** (5.0 / 3.0) * torch.sqrt(slope) * c[f"invn_{edge}"]
    q = torch.minimum(q, hb * torch.sqrt(GRAVITY * hb))
    return torch.where(hb > h_dry, q, torch.zeros_like(q)) * c[f"validb_{edge}"]


def _face_surfaces(eta, c, spec, name, dim):
    """Surfaces on both sides of every face along one axis and the face flow depth
    ``h_f = max(eta) - max(z)``; closed and free edges mirror the boundary cell (no gradient),
    sea edges use their ghost surface."""
    lo_edge, hi_edge = ("left", "right") if name == "x" else ("top", "bottom")
    ghost = lambda edge, i: (c[f"sea_{edge}"].expand_as(eta.narrow(dim, i, 1)) if spec[edge].kind == "sea"
                             else eta.narrow(dim, i, 1))
    eta_pad = _pad(eta, ghost(lo_edge, 0), ghost(hi_edge, eta.shape[dim] - 1), dim)
    n_pad = eta_pad.shape[dim]
    eta_a, eta_b = eta_pad.narrow(dim, 0, n_pad - 1), eta_pad.narrow(dim, 1, n_pad - 1)
    return eta_a, eta_b, torch.maximum(eta_a, eta_b) - c[f"zmax_{name}"]


def _momentum(q, h, eta, faces, c, spec, name, dim, dt, p):
    """New face discharges along one axis (``name`` x: dim -1, y: dim -2) by the local-inertial
    equation with theta smoothing, semi-implicit friction, dry-face rule and Froude cap;
    ``faces`` is the output of :func:`_face_surfaces`."""
    g, dx, theta, h_dry = GRAVITY, p["dx"], p["theta"], p["h_dry"]
    lo_edge, hi_edge = ("left", "right") if name == "x" else ("top", "bottom")
    eta_a, eta_b, hf = faces
    hf_c = torch.clamp(hf, min=h_dry)
    # neighbours for theta smoothing; a boundary face uses itself for its missing neighbour
    nq = q.shape[dim]
    q_pad = _pad(q, q.narrow(dim, 0, 1), q.narrow(dim, nq - 1, 1), dim)
    q_nb = 0.5 * (q_pad.narrow(dim, 0, nq) + q_pad.narrow(dim, 2, nq))
    num = theta * q + (1.0 - theta) * q_nb - g * hf * dt * (eta_b - eta_a) / dx
    den = 1.0 + dt * c[f"gn2_{name}"] * torch.abs(q) / (hf_c * hf_c * _cbrt(hf_c))  # hf^(7/3)
    cap = hf_c * torch.sqrt(g * hf_c)
    q_new = torch.clamp(num / den, min=-cap, max=cap)
    q_new = torch.where(hf > h_dry, q_new, torch.zeros_like(q_new)) * c[f"open_{name}"]
    # free edges replace their boundary faces (outflow only: sign points out of the domain)
    parts = [q_new.narrow(dim, 1, nq - 2)] if nq > 2 else None
    if spec[lo_edge].kind == "free" or spec[hi_edge].kind == "free":
        lo = (-_free_flux(h, eta, c, lo_edge, dim, dx, h_dry) if spec[lo_edge].kind == "free"
              else q_new.narrow(dim, 0, 1))
        hi = (_free_flux(h, eta, c, hi_edge, dim, dx, h_dry) if spec[hi_edge].kind == "free"
              else q_new.narrow(dim, nq - 1, 1))
        q_new = torch.cat([lo] + (parts or []) + [hi], dim)
    return q_new


def _cbrt(x):
    """Cube root of a positive tensor (the friction term's ``h_f^(7/3) = h_f^2 cbrt(h_f)``).

    float32: a bit-level first guess (the exponent divided by 3, within 4 %) refined by two
    Halley steps, max relative error 3e-7 (about 2 ulp; ``x ** (1/3)`` via pow is within 1 ulp)
    at a sixth of the cost of a vectorised pow, which was 60 % of a compiled step's kernel time
    (docs/hydrology.md, "Cost"). Other dtypes use pow. ``x`` must be > 0 and finite (h_f is
    clamped to h_dry).
    """
    if x.dtype != torch.float32:
        return x ** (1.0 / 3.0)
    bits = x.view(torch.int32).to(torch.float32)  # float arithmetic: int division does not vectorise
    y = (bits * (1.0 / 3.0) + 709921077.0).to(torch.int32).view(torch.float32)
    for _ in range(2):
        y3 = y * y * y
        y = y * (y3 + 2.0 * x) / (2.0 * y3 + x)
    return y


def _limit_outflow(qx, qy, avail, dt, dx, eps):
    """Scale each cell's outgoing fluxes so that it cannot lose more than ``avail`` metres.

    Each face has one donor (the upwind cell), so scaling by the donor's factor keeps the
    update conservative; ghost cells outside sea edges are unlimited (factor 1). The factor is
    shrunk by 8 eps so float rounding cannot push a depth below zero.
    """
    out = dt / dx * (torch.relu(-qx[..., :-1]) + torch.relu(qx[..., 1:])
                     + torch.relu(-qy[..., :-1, :]) + torch.relu(qy[..., 1:, :]))
    safe = avail * (1.0 - 8.0 * eps)
    scale = torch.where(out > safe, safe / out, torch.ones_like(out))
    ones_x = torch.ones_like(scale[..., :1])
    sx = _pad(scale, ones_x, ones_x, -1)
    qx = qx * torch.where(qx > 0, sx[..., :-1], sx[..., 1:])
    ones_y = torch.ones_like(scale[..., :1, :])
    sy = _pad(scale, ones_y, ones_y, -2)
    qy = qy * torch.where(qy > 0, sy[..., :-1, :], sy[..., 1:, :])
    return qx, qy


def _time_step(h64, faces_x, faces_y, c, p):
    """Per-storm (S,) float64 dt before rounding: the smaller of the gravity-wave limit
    ``alpha dx / sqrt(g max h)`` and the surface-slope limit ``beta dx / sqrt(g max |d eta|)``
    (largest surface drop across a wet open face), capped by ``max_dt``. Why the second limit:
    see the module docstring and docs/hydrology.md."""
    g, dx = GRAVITY, p["dx"]
    hmax = torch.clamp(h64.amax(dim=(1, 2)), min=1e-12)
    dt = torch.clamp(p["alpha"] * dx / torch.sqrt(g * hmax), max=p["max_dt"])
    if p["beta"] is None:  # slope limit disabled (the pre-issue-13 rule)
        return dt
    drops = []
    for (eta_a, eta_b, hf), name in ((faces_x, "x"), (faces_y, "y")):
        wet = (hf > p["h_dry"]) & (c[f"open_{name}"] > 0)
        drops.append(torch.where(wet, torch.abs(eta_b - eta_a), torch.zeros_like(hf)).amax(dim=(1, 2)))
    drop = torch.clamp(torch.maximum(*drops).to(torch.float64), min=1e-12)
    return torch.minimum(dt, p["beta"] * dx / torch.sqrt(g * drop))


def _make_step(c, spec, p):
    """Build the step function ``step(state, t_end, rain, infil) -> state`` for this run.

    ``state`` is a tuple of tensors: h64 (S,ny,nx) float64 depth, qx, qy (compute dtype), t (S,)
    float64 seconds, and the float64 interval accumulators fx, fy (face q dt), loss, hdt (h dt).
    ``t_end`` is a (1,) float64 tensor (next output time), ``rain`` (S,1,1) float64 m/s,
    ``infil`` (ny,nx) float64 m/s or None. Only tensors change between calls, so a compiled
    version is not recompiled.
    """
    dtype, dx = p["dtype"], p["dx"]
    eps = torch.finfo(dtype).eps

    def step(state, t_end, rain, infil):
        h64, qx, qy, t, fx, fy, loss, hdt = state
        h = h64.to(dtype)
        eta = c["z"] + h
        faces_x = _face_surfaces(eta, c, spec, "x", -1)
        faces_y = _face_surfaces(eta, c, spec, "y", -2)
        # per-storm dt (see _time_step), rounded down to the quantum, clipped to t_end
        dt = _time_step(h64, faces_x, faces_y, c, p)
        dt = torch.clamp(torch.floor(dt / DT_QUANTUM_S) * DT_QUANTUM_S, min=DT_QUANTUM_S)
        dt = torch.minimum(dt, torch.clamp(t_end - t, min=0.0))
        dt64 = dt.view(-1, 1, 1)
        dtc = dt64.to(dtype)
        active = dt64 > 0

        qx_new = _momentum(qx, h, eta, faces_x, c, spec, "x", -1, dtc, p)
        qy_new = _momentum(qy, h, eta, faces_y, c, spec, "y", -2, dtc, p)
        rain_dt = rain * dt64 * c["valid"]  # float64 m; no rain falls on nodata walls
        qx_new, qy_new = _limit_outflow(qx_new, qy_new, h + rain_dt.to(dtype), dtc, dx, eps)
        # storms already at t_end keep their state (dt = 0, but theta smoothing would still act)
        qx = torch.where(active, qx_new, qx)
        qy = torch.where(active, qy_new, qy)

        # continuity in float64, with exactly the fluxes that are saved
        fx_step = qx.to(torch.float64) * dt64
        fy_step = qy.to(torch.float64) * dt64
        h64 = h64 + (fx_step[..., :-1] - fx_step[..., 1:] + fy_step[..., :-1, :] - fy_step[..., 1:, :]) / dx + rain_dt
        if infil is not None:
            loss_step = torch.minimum(infil * dt64, h64)  # cannot infiltrate more than is there
            h64 = h64 - loss_step
            loss = loss + loss_step
        return (h64, qx, qy, t + dt, fx + fx_step, fy + fy_step, loss, hdt + h64 * dt64)

    return step


def _make_advance(step):
    """``advance(n, state, t_end, rain, infil) -> (n, state)``: ``step`` repeated until every
    storm reached ``t_end``, as one ``while_loop`` (torch's structured loop, a higher-order op),
    so that torch.compile turns a whole output interval into one call. ``n`` ((1,) int64 tensor)
    counts the steps. The loop runs in inductor's generated wrapper: per step it calls the fused
    step kernel and the stop test, without dynamo's per-call guards and wrappers, which cost as
    much as the kernel itself on small grids (docs/hydrology.md, "Cost"). The stop test reads a
    device bool each step: free on a CPU, a synchronisation on CUDA, which therefore keeps the
    host loop of :func:`_advance`."""
    from torch._higher_order_ops.while_loop import while_loop

    def advance(n, state, t_end, rain, infil):
        def cond(n, *st):
            return (st[3] < t_end).any()

        def body(n, *st):
            st = step(st, t_end, rain, infil)
            # loop outputs may not alias its inputs: without infiltration the loss is unchanged
            loss = st[6] if infil is not None else st[6].clone()
            return (n + 1,) + tuple(st[:6]) + (loss, st[7])

        out = while_loop(cond, body, (n,) + tuple(state))
        return out[0], tuple(out[1:])

    return advance


COMPILE_MODES = (False, True, "interval", "step")


# Storm-cells (storms x ny x nx) up to which the compiled solver runs on one thread: a step of a
# small batch is a few microseconds of work per kernel, less than a second thread's fork and join
# (a 64 x 64 storm ran 20 % faster on one thread than on two, 96 x 96 8 % slower; docs/hydrology.md,
# "Cost"). Depths are bit-identical whatever the thread count.
SINGLE_THREAD_CELLS = 6400


def single_threaded(storm_cells: int) -> bool:
    """Whether the compiled CPU solver runs a batch of ``storm_cells`` (storms x ny x nx) on one thread."""
    return storm_cells <= SINGLE_THREAD_CELLS


def cpu_compile_options(storm_cells: int | None = None) -> dict:
    """Inductor options for the solver's CPU kernels, for a batch of ``storm_cells`` storms x cells.

    On a CPU with AVX-512, inductor writes 512-bit vector code by default; for this solver's
    element-wise kernels that code ran 1.8-2.2x slower than 256-bit (AVX2) code on an Intel Xeon
    with AVX-512 (64-256 cells square, 1-2 threads), with bit-identical depths
    (docs/hydrology.md, "Cost"). Every x86 CPU with AVX-512 has AVX2, so 256 bits are asked for
    there; elsewhere inductor's own choice stands (it is 256 bits on an AVX2 CPU anyway). A small
    batch (:func:`single_threaded`) gets one thread, whatever torch's thread count: inductor
    writes the thread count into the kernels (and its cache key) when it compiles them.
    """
    options = {"cpp_wrapper": True}
    if torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        options["cpp.simdlen"] = 256
    if storm_cells is not None and single_threaded(storm_cells):
        options["cpp.threads"] = 1
    return options


class _Stepper:
    """Advances the state to an output time, eager or compiled (``mode``, see :func:`simulate`).

    False: the eager step in a host loop (:func:`_advance`). "interval" (CPU): every output
    interval is one compiled call (:func:`_make_advance`). "step": the compiled step in the host
    loop. True: "interval" on a CPU, "step" on other devices. Falls back to eager, with a warning,
    if compilation fails. ``storm_cells`` (storms x ny x nx) picks the CPU kernels' thread count
    (:func:`cpu_compile_options`).
    """

    def __init__(self, step, mode, device, storm_cells=None):
        self.eager = step
        self.fn = step  # the step the host loop calls
        self.interval_fn = None  # compiled whole-interval advance (CPU)
        self.compiled = False
        if mode is True:
            mode = "interval" if torch.device(device).type == "cpu" else "step"
        if mode == "interval" and torch.device(device).type != "cpu":
            mode = "step"  # the loop's stop test would synchronise with the device every step
        if mode:
            try:
                if mode == "interval":
                    # cpp_wrapper: inductor writes the loop itself in C++ (a Python wrapper costs
                    # ~20 us a step in tensor bookkeeping; docs/hydrology.md, "Cost")
                    self.interval_fn = torch.compile(_make_advance(step), dynamic=False, fullgraph=True,
                                                     options=cpu_compile_options(storm_cells))
                elif torch.device(device).type == "cpu":
                    self.fn = torch.compile(step, dynamic=False, options=cpu_compile_options(storm_cells))
                else:
                    self.fn = torch.compile(step, dynamic=False)
                self.compiled = True
            except Exception as err:  # torch.compile itself unavailable (e.g. unsupported Python)
                warnings.warn(f"torch.compile unavailable ({type(err).__name__}: {err}); running eager", RuntimeWarning,
                              stacklevel=3)

    def _fall_back(self, err, stacklevel):
        first_line = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(f"torch.compile failed ({type(err).__name__}: {first_line}); running eager", RuntimeWarning,
                      stacklevel=stacklevel + 1)
        self.fn, self.interval_fn, self.compiled = self.eager, None, False

    def __call__(self, *args):
        if not self.compiled:
            return self.fn(*args)
        try:
            return self.fn(*args)
        except Exception as err:  # compilation happens at the first call (no C++ compiler, ...)
            self._fall_back(err, stacklevel=5)  # simulate's caller, via _advance and advance
            return self.fn(*args)

    def advance(self, state, t_end, rain, infil, steps_per_sync):
        """Step every storm to ``t_end``; returns the state and the number of steps taken."""
        if self.interval_fn is not None:
            try:
                n, state = self.interval_fn(torch.zeros(1, dtype=torch.int64), state, t_end, rain, infil)
                return state, int(n[0])
            except Exception as err:  # compilation happens at the first call; the state is unchanged
                self._fall_back(err, stacklevel=3)  # simulate's caller
        return _advance(self, state, t_end, rain, infil, steps_per_sync)


# --------------------------------------------------------------------------------------------
# public API


def simulate(elevation, dx, rain_mm_per_h, *, manning=0.03, boundaries=None, infiltration_mm_per_h=None,
             hours=None, dtype=torch.float32, device="cpu", alpha=0.5, theta=0.8, h_dry=1e-3, max_dt=60.0, beta=0.4,
             compile=False, progress=False, initial_depth=None, nodata_mask=None, source=None,
             rain_source=None, output_interval_s=SECONDS_PER_HOUR, steps_per_sync=None) -> SimulationResult:
    """Run the local-inertial solver for one or several storms over one DEM.

    Parameters (units in brackets)
    ----------
    elevation : (ny, nx) bed elevation [m]; NaN allowed only where ``nodata_mask`` is True
        (those cells are walls: closed faces, no rain, depth 0).
    dx : cell size [m].
    rain_mm_per_h : (T,) or (S, T) intensities [mm/h], constant within each output interval;
        S storms are run batched (batch dimension first), each with its own dt.
    manning : scalar or (ny, nx) Manning n [s m^-1/3].
    boundaries : BoundarySpec or spec string (see piff.hydro.boundary); None = all closed.
    infiltration_mm_per_h : optional scalar or (ny, nx) constant loss rate [mm/h], limited to the
        water present.
    hours : number of output intervals (default T); missing rain is 0, extra rain is ignored.
    dtype : torch.float32 or torch.float64 compute dtype (continuity is float64 in both) and
        output dtype.
    alpha : CFL coefficient of dt = alpha dx / sqrt(g max h). 0.5 avoids the checkerboard
        oscillation seen with 0.7 in deep pits (docs/hydrology.md).
    beta : surface-slope coefficient of dt = beta dx / sqrt(g max |d eta|) over wet faces, needed
        where friction dominates (module docstring, docs/hydrology.md); 0.4 is stable on sub-critical
        slopes with alpha up to 0.7. None (or inf) disables it: the rule before issue 13.
    theta : de Almeida smoothing weight (1 = Bates 2010).
    h_dry : face flow depth [m] below which a face carries no flow.
    max_dt : upper bound of dt [s].
    compile : False (eager), True (the fast path), "interval" or "step"; torch.compile with an eager
        fallback and a warning. "interval" (True on a CPU) compiles the whole loop of an output
        interval into one call: a step then costs its fused kernel and almost nothing else, but the
        compilation (~8 s on one core) is redone in every process, as torch cannot cache such a
        loop on disk. "step" (True elsewhere) compiles one step, which torch caches on disk (~3 s
        once cached) but which pays ~150 us of Python per step: better for runs of a few thousand
        steps, such as the coarse prior on its 16 x 16 grid. docs/hydrology.md, "Cost".
    initial_depth : optional (ny, nx) or (S, ny, nx) starting depth [m].
    source, rain_source : names used in error messages (default "elevation", "rainfall").
    output_interval_s : seconds between outputs (default 3600: hourly); rain intensities stay
        in mm/h.
    steps_per_sync : steps between host checks of the output time (default 1 on CPU, 16 on CUDA);
        unused by the compiled interval loop.
    """
    t0 = time.perf_counter()
    source = source or "elevation"
    z, mask = _check_elevation(elevation, nodata_mask, source)
    ny, nx = z.shape
    dx = _check_scalar(dx, "dx", 0.0, low_open=True)
    interval = _check_scalar(output_interval_s, "output_interval_s", 0.0, low_open=True)
    rain = _check_rain(rain_mm_per_h, hours, rain_source or "rainfall")
    S, T = rain.shape
    n = _as_2d_raster(manning, z.shape, "manning")
    infil = None if infiltration_mm_per_h is None else _as_2d_raster(infiltration_mm_per_h, z.shape, "infiltration")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, dtype)
    if dtype not in (torch.float32, torch.float64):
        raise PiffInputError("dtype", f"expected torch.float32 or torch.float64, got {dtype}")
    p = {"dtype": dtype, "dx": dx, "alpha": _check_scalar(alpha, "alpha", 0.0, 1.0, low_open=True),
         "theta": _check_scalar(theta, "theta", 0.0, 1.0), "h_dry": _check_scalar(h_dry, "h_dry", 0.0, low_open=True),
         "max_dt": _check_scalar(max_dt, "max_dt", DT_QUANTUM_S),
         "beta": None if beta is None or beta == math.inf else _check_scalar(beta, "beta", 0.0, low_open=True)}
    spec = parse_boundaries(boundaries)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise PiffInputError("device", f"{device!r} is not a torch device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PiffInputError("device", "CUDA was requested but torch sees no CUDA device")
    if not isinstance(compile, str):
        compile = bool(compile)
    if compile not in COMPILE_MODES:
        raise PiffInputError("compile", f"expected one of {COMPILE_MODES}, got {compile!r}")
    if steps_per_sync is None:
        steps_per_sync = 16 if device.type == "cuda" else 1

    c = _build_constants(z, mask, n, spec, dx, dtype, device)
    f64 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=device)
    h0 = _initial_depth(initial_depth, S, mask)
    zeros = lambda *shape: torch.zeros((S,) + shape, dtype=torch.float64, device=device)
    state = (f64(h0), torch.zeros((S, ny, nx + 1), dtype=dtype, device=device),
             torch.zeros((S, ny + 1, nx), dtype=dtype, device=device), zeros(),
             zeros(ny, nx + 1), zeros(ny + 1, nx), zeros(ny, nx), zeros(ny, nx))
    infil_t = None if infil is None else f64(infil / (MM_PER_M * SECONDS_PER_HOUR) * ~mask)
    stepper = _Stepper(_make_step(c, spec, p), compile, device, storm_cells=S * ny * nx)

    out_np = np.float64 if dtype == torch.float64 else np.float32
    out = {k: np.zeros((S, T + 1) + shape, dtype=out_np) for k, shape in
           (("depth", (ny, nx)), ("vx", (ny, nx)), ("vy", (ny, nx)), ("flux_x", (ny, nx + 1)),
            ("flux_y", (ny + 1, nx)), ("loss", (ny, nx)))}
    out["depth"][:, 0] = h0
    budget = {"outflow": np.zeros(S), "loss": np.zeros(S)}
    intervals = range(1, T + 1)
    if progress:
        from tqdm import tqdm
        intervals = tqdm(intervals, desc="simulate", unit="h" if interval == SECONDS_PER_HOUR else "output")
    n_steps = 0
    for k in intervals:
        # (1,), not 0-d: dynamo traces a 0-d input as a Python float, specialises it and restarts
        t_end = torch.tensor([k * interval], dtype=torch.float64, device=device)
        rain_k = f64(rain[:, k - 1] / (MM_PER_M * SECONDS_PER_HOUR)).view(S, 1, 1)
        state, steps = stepper.advance(state, t_end, rain_k, infil_t, steps_per_sync)
        n_steps += steps
        state = _save_interval(state, out, budget, k, dx, p["h_dry"] * interval)
    storage_end = (state[0].sum(dim=(1, 2)) * dx * dx).cpu().numpy()  # float64 state, not the cast output
    return SimulationResult(
        **out, rain_mm_per_h=np.concatenate([np.zeros((S, 1)), rain], axis=1).astype(out_np),
        mass_balance=_mass_balance(rain, interval, mask, dx, h0, storage_end, budget),
        dx=dx, n_steps=n_steps, wall_time_s=time.perf_counter() - t0,
        settings=_settings(p, n, infil, spec, stepper.compiled, device),
        elevation=np.where(mask, np.nan, z).astype(np.float32), nodata_mask=mask, output_interval_s=interval)


def _uniform_or_raster(a):
    return None if a is None else float(a.flat[0]) if np.all(a == a.flat[0]) else "raster"


def _settings(p, n, infil, spec, compiled, device) -> dict:
    """Solver settings recorded with the results for provenance."""
    return {"scheme": "local-inertial (Bates 2010) with theta smoothing (de Almeida 2012)",
            "alpha": p["alpha"], "beta": p["beta"], "theta": p["theta"], "h_dry": p["h_dry"], "max_dt": p["max_dt"],
            "manning": _uniform_or_raster(n), "infiltration_mm_per_h": _uniform_or_raster(infil),
            "boundaries": spec.to_string(), "dtype": str(p["dtype"]).replace("torch.", ""),
            "compiled": compiled, "device": str(device)}


def _initial_depth(initial_depth, S, mask) -> np.ndarray:
    """(S, ny, nx) float64 starting depth [m] from None, a scalar, (ny, nx) or (S, ny, nx)."""
    h0 = np.zeros((S,) + mask.shape)
    if initial_depth is None:
        return h0
    value = np.asarray(initial_depth, dtype=np.float64)
    if value.shape not in ((), mask.shape, h0.shape):
        raise PiffInputError("initial_depth", f"expected a scalar, {mask.shape} or {h0.shape}, got shape {value.shape}")
    h0[:] = value
    if not np.all(np.isfinite(h0)) or np.any(h0 < 0):
        raise PiffInputError("initial_depth", "depths must be finite and >= 0 m")
    h0[:, mask] = 0.0
    return h0


def _advance(stepper, state, t_end, rain, infil, steps_per_sync):
    """Step every storm to ``t_end``; returns the state and the number of steps taken."""
    steps = 0
    while True:
        for _ in range(steps_per_sync):
            state = stepper(state, t_end, rain, infil)
        steps += steps_per_sync
        if not bool((state[3] < t_end).any()):  # the one host sync per steps_per_sync steps
            return state, steps


def _save_interval(state, out, budget, k, dx, hdt_dry):
    """Copy output interval k to the numpy outputs, add its boundary outflow and loss to the
    budget, and reset the accumulators."""
    h64, qx, qy, t, fx, fy, loss, hdt = state
    dtype = out["depth"].dtype
    cx = 0.5 * (fx[..., :-1] + fx[..., 1:])  # interval-integrated centre discharge, m^2
    cy = 0.5 * (fy[..., :-1, :] + fy[..., 1:, :])
    wet = hdt > hdt_dry
    safe = torch.where(wet, hdt, torch.ones_like(hdt))
    for name, value in (("depth", h64), ("flux_x", fx), ("flux_y", fy), ("loss", loss),
                        ("vx", torch.where(wet, cx / safe, torch.zeros_like(cx))),
                        ("vy", torch.where(wet, cy / safe, torch.zeros_like(cy)))):
        out[name][:, k] = value.cpu().numpy().astype(dtype)
    outflow = (fx[..., -1].sum(-1) - fx[..., 0].sum(-1) + fy[..., -1, :].sum(-1) - fy[..., 0, :].sum(-1)) * dx
    budget["outflow"] += outflow.cpu().numpy()
    budget["loss"] += (loss.sum(dim=(1, 2)) * dx * dx).cpu().numpy()
    zero = torch.zeros_like
    return (h64, qx, qy, t, zero(fx), zero(fy), zero(loss), zero(hdt))


def _mass_balance(rain, interval, mask, dx, h0, storage_end, budget) -> list:
    """Per-storm volumes in m^3 (see SimulationResult.mass_balance)."""
    area = dx * dx
    rain_m3 = rain.sum(axis=1) * (interval / SECONDS_PER_HOUR) / MM_PER_M * area * np.count_nonzero(~mask)
    storage0 = h0.sum(axis=(1, 2)) * area
    rows = []
    for s in range(rain.shape[0]):
        change = storage_end[s] - storage0[s]
        residual = rain_m3[s] - budget["outflow"][s] - budget["loss"][s] - change
        scale = rain_m3[s] + storage0[s] + abs(budget["outflow"][s])  # water that took part
        rows.append({"rain_m3": float(rain_m3[s]), "boundary_outflow_m3": float(budget["outflow"][s]),
                     "loss_m3": float(budget["loss"][s]), "storage_change_m3": float(change),
                     "residual_m3": float(residual),
                     "relative_residual": float(residual / max(scale, 1e-300))})
    return rows


def continuity_residual(result: SimulationResult, relative: bool = False) -> np.ndarray:
    """Residual of the discrete continuity identity (:mod:`piff.hydro.continuity`) on the saved arrays.

    Returns ``(S, T, ny, nx)`` float64: for interval k = 1..T,
    ``depth[k] - depth[k-1] - (net face inflow / dx + rain - loss)`` in metres; 0 on nodata
    cells (walls that receive no rain). With ``relative=True`` each value is divided by the sum
    of the absolute values of the terms in that cell (so float32 data give ~1e-7).
    """
    d = result.depth.astype(np.float64)
    fx = result.flux_x[:, 1:].astype(np.float64)
    fy = result.flux_y[:, 1:].astype(np.float64)
    rain = result.rain_mm_per_h[:, 1:].astype(np.float64)
    loss = result.loss[:, 1:].astype(np.float64)
    interval_h = result.output_interval_s / SECONDS_PER_HOUR
    res = water_balance_residual_m(d[:, 1:], d[:, :-1], fx, fy, rain, result.dx, loss, interval_h=interval_h)
    res[..., result.nodata_mask] = 0.0
    if relative:
        faces = (np.abs(fx[..., :-1]) + np.abs(fx[..., 1:]) + np.abs(fy[..., :-1, :]) + np.abs(fy[..., 1:, :]))
        scale = (np.abs(d[:, 1:]) + np.abs(d[:, :-1]) + mm_to_m(rain * interval_h)[..., None, None] + np.abs(loss)
                 + faces / result.dx)
        res = res / np.maximum(scale, np.finfo(np.float64).tiny)
    return res
