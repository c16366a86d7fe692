"""The physics (mass-conservation) loss and its flux modes, in physical units.

The residual is the discrete continuity identity of docs/architecture.md, computed by its one
owner, :func:`piff.hydro.continuity.water_balance_residual_m`; this module adapts the training
batch layout (B, 1, H, W) to it and turns it into a loss.
"""

from __future__ import annotations

import torch

from piff.choices import PHYSICS_NORMS
from piff.hydro.continuity import water_balance_residual_m
from piff.units import MM_PER_M, SECONDS_PER_HOUR


def hourly_imbalance(depth_now_m, depth_prev_m, flux_x_m2, flux_y_m2, rain_mm_per_h, dx, loss_m=None):
    """Water-balance residual of one hour for a batch, (B, 1, H, W) in metres of water.

    depth_now_m, depth_prev_m: (B, 1, H, W) m at hours k and k-1.
    flux_x_m2: (B, 1, H, W+1), flux_y_m2: (B, 1, H+1, W) hour-integrated face discharge (m^2),
        positive towards +column / +row.
    rain_mm_per_h: (B,) intensity of the interval (k-1, k].
    dx: float or (B,) cell size (m). loss_m: (B, 1, H, W) m of losses over the hour, or None.
    """
    _check_shapes(depth_now_m, depth_prev_m, flux_x_m2, flux_y_m2)
    b = depth_now_m.shape[0]
    like = {"dtype": depth_now_m.dtype, "device": depth_now_m.device}
    # one value per (sample, channel): the leading dims of (B, 1, H, W)
    dx = torch.as_tensor(dx, **like).reshape(-1, 1).expand(b, 1)
    rain = torch.as_tensor(rain_mm_per_h, **like).reshape(b, 1)
    return water_balance_residual_m(depth_now_m, depth_prev_m, flux_x_m2, flux_y_m2, rain, dx, loss_m)


def physics_loss(depth_now_m, depth_prev_m, flux_x_m2, flux_y_m2, rain_mm_per_h, dx, loss_m=None, scale_m=None,
                 mask=None, norm="l2"):
    """mean(R^2) (``norm="l2"``) or mean(|R|) (``"l1"``) with R expressed as the hourly imbalance
    in units of ``scale_m`` metres.

    In m/s the residual is ~1e-6 for centimetre errors, so mean(R^2) would be ~1e-12 and any
    sensible ``physics_weight`` would make it vanish. Default ``scale_m=None`` uses 1 mm,
    i.e. R in mm/h. ``training_loss`` passes the normaliser's depth scale instead, which puts
    the term in model-space units, the same units as the velocity MSE it is added to.
    ``mask`` (B, 1, H, W) bool, True inside the domain, restricts the mean to those cells: the
    solver's nodata (wall) cells receive no rain, so the identity does not hold there.
    """
    if norm not in PHYSICS_NORMS:
        raise ValueError(f"physics_norm must be one of {PHYSICS_NORMS}, got {norm!r}")
    # in m/s first, then in units of scale_m per hour (the order kept from the first version)
    r_m_per_s = hourly_imbalance(depth_now_m, depth_prev_m, flux_x_m2, flux_y_m2, rain_mm_per_h, dx,
                                 loss_m) / SECONDS_PER_HOUR
    scale = 1.0 / MM_PER_M if scale_m is None else float(scale_m)
    r = r_m_per_s * (SECONDS_PER_HOUR / scale)
    per_cell = r.square() if norm == "l2" else r.abs()
    if mask is None:
        return per_cell.mean()
    mask = mask.to(per_cell.dtype).expand_as(per_cell)
    return (per_cell * mask).sum() / mask.sum().clamp_min(1.0)


# Face depth offset (m) in the flux scaling below: keeps the ratio finite on dry faces, where
# the data's flux is ~0 anyway.
FACE_DEPTH_EPS_M = 0.01


def face_depths(depth_m):
    """Depth on the x faces (.., H, W+1) and y faces (.., H+1, W): the mean of the two cells
    beside each face, the one inside cell on the boundary faces (replicate padding, so a
    boundary face never sees an invented neighbour)."""
    px = torch.cat([depth_m[..., :1], depth_m, depth_m[..., -1:]], dim=-1)
    py = torch.cat([depth_m[..., :1, :], depth_m, depth_m[..., -1:, :]], dim=-2)
    return 0.5 * (px[..., :-1] + px[..., 1:]), 0.5 * (py[..., :-1, :] + py[..., 1:, :])


def depth_scaled_fluxes(depth_model_m, depth_data_m, flux_x_m2, flux_y_m2, eps_m=FACE_DEPTH_EPS_M,
                        depth_prev_m=None):
    """The data's hour-integrated fluxes rescaled to the model's depth at fixed velocity:
    F' = F * (h'_face + eps) / (h_face + eps). Equal to the data's fluxes when the model's depth
    equals the data's, so the residual still vanishes on the solver's output; otherwise a
    cell's error moves water through its faces to and from its neighbours. This is what makes
    the physics term more than the velocity MSE: with the data's fluxes alone the residual of
    the model's depth is just its error (h' - h), cell by cell.

    With ``depth_prev_m`` (the data's depth an hour earlier) the face depths are the hour's
    means, (h_prev + h') / 2 over (h_prev + h) / 2: an hour-integrated flux is carried by the
    depth during the hour, not at its end. On a face the flow drained during the hour (h ~ 0 at
    the end, a large F) the end-of-hour ratio moves F by F / eps per metre of model error; the
    hour-mean ratio by at most F / (h_prev / 2 + eps)."""
    model, data = depth_model_m.clamp_min(0), depth_data_m.clamp_min(0)  # a depth below 0 is dry
    if depth_prev_m is not None:
        prev = depth_prev_m.clamp_min(0)
        model, data = 0.5 * (prev + model), 0.5 * (prev + data)
    mx, my = face_depths(model)
    dx_, dy_ = face_depths(data)
    # the ratio first: exactly 1 where the depths agree, so the data come back bit for bit
    return flux_x_m2 * ((mx + eps_m) / (dx_ + eps_m)), flux_y_m2 * ((my + eps_m) / (dy_ + eps_m))


def _check_shapes(depth_now, depth_prev, flux_x, flux_y):
    b, c, h, w = depth_now.shape
    expected = {"depth_prev": (depth_prev.shape, (b, c, h, w)), "flux_x": (flux_x.shape, (b, c, h, w + 1)),
                "flux_y": (flux_y.shape, (b, c, h + 1, w))}
    for name, (got, want) in expected.items():
        if tuple(got) != want:
            raise ValueError(f"{name} has shape {tuple(got)}, expected {want} for depth of shape {(b, c, h, w)}")
