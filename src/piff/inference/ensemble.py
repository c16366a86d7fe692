"""Probabilistic flood forecasts from a rainfall-forecast ensemble (docs/ensemble.md).

:func:`predict_members` runs a trained model for every member of a rainfall ensemble through the
same pipeline as ``piff predict`` (:mod:`piff.inference.predict`: prior, whole-domain or tiled
inference, :class:`~piff.inference.predict._MapSampler`): each (rain member, hour) is one group
of maps, and with the stochastic sampler every group gets ``samples`` bridge samples. All maps of
all members and hours go through the network in the same calls (no loop over members).

A forecast member is one (rain member, bridge sample) pair, followed over the hours. Its bridge
noise is seeded by (seed, rain member key, sample, window), *not* by the hour: the sample's noise
is the same at every hour, so a member's maps form a coherent trajectory, and "ever exceeds" and
"first exceedance" are read along it (with noise redrawn every hour, the maximum over hours of
independent draws would inflate the exceedance probability). Keys are the rain members' indices
unless given, so a member predicted alone with its key gives the same maps as in the batch.

:func:`ensemble_products` turns the member maps into the forecast products; ``piff predict``
writes them with :func:`piff.data.outputs.ensemble_dataset`.

Tiled inference blends each member's window maps into one map (the member map); in the overlaps
two independent bridge draws are averaged, which narrows the bridge spread there a little (the
rain members' spread is untouched: a member's windows share its rain). Whole-domain inference,
the default up to ~1000 x 1000 cells, has no overlaps.
"""

from __future__ import annotations

import time

import numpy as np

from piff.choices import DEFAULT_ATTENTION, DEFAULT_PRECISION, STOCHASTIC_SAMPLERS
from piff.inference import predict as P
from piff.inference import tiling

QUANTILES = (0.1, 0.5, 0.9)
# First element of a rain member's seed key: keeps its maps' seeds apart from piff predict's
# (seed, hour, member, window) ones.
_ENSEMBLE_KEY = 1_000_003


def predict_members(trained, terrain, rain_members, hours, *, samples: int = 1, nfe: int = 10,
                    sampler: str = "euler", seed: int = 0, member_keys=None, device="cpu",
                    batch_size: int | None = None, boundary=P.DEFAULT_BOUNDARY, overlap: float = P.DEFAULT_OVERLAP,
                    tile=None, coarse_factor: int = 4, elevation_offset_m: float = 0.0,
                    attention: str = DEFAULT_ATTENTION, precision: str = DEFAULT_PRECISION, progress: bool = False,
                    source=None) -> tuple[np.ndarray, dict]:
    """Depth maps [m] of every (rain member, bridge sample) at ``hours``.

    rain_members : (M, T) hourly intensities [mm/h], one row per member.
    samples : bridge samples per rain member (stochastic sampler; 1 otherwise).
    member_keys : M integers seeding each member's bridge noise (default 0..M-1).
    Other arguments as :func:`piff.inference.predict.predict_maps`.

    Returns ``(maps, info)``: maps (M, S, len(hours), ny, nx) float32, NaN at nodata; info the
    provenance attributes (as predict_maps's) and ``wall_time_s``.
    """
    t_start = time.perf_counter()
    source = source or terrain.name
    hours = [int(h) for h in hours]
    rain = np.asarray(rain_members, np.float64)
    if rain.ndim != 2 or rain.shape[0] == 0:
        raise ValueError(f"rain_members must be (members, hours), got shape {rain.shape}")
    rain = np.stack([P._check_request(trained, terrain, r, hours, nfe, sampler, overlap, f"rainfall member {m + 1}")
                     for m, r in enumerate(rain)])
    keys = list(range(len(rain))) if member_keys is None else [int(k) for k in member_keys]
    if len(keys) != len(rain):
        raise ValueError(f"{len(keys)} member keys for {len(rain)} members")
    stochastic = trained.kind == "piff" and sampler in STOCHASTIC_SAMPLERS
    samples = max(1, int(samples)) if stochastic else 1
    device = P.resolve_device(device)
    plan = P.inference_plan(trained, terrain.shape, tile, batch_size, device, attention, precision)
    n_members, n_hours = len(rain), len(hours)

    valid = terrain.valid_mask()
    uses_prior = trained.prior != "none"
    # groups: (member, hour) pairs, member-major
    if uses_prior:
        priors = np.concatenate([P.prior_maps(terrain, r, hours, prior=trained.prior, boundary=boundary,
                                              coarse_factor=coarse_factor) for r in rain])
    else:
        priors = np.zeros((n_members * n_hours,) + terrain.shape, np.float32)
    elevation = P.network_elevation(terrain) + np.float32(elevation_offset_m)
    P._warn_elevation_range(trained.normaliser, elevation[valid], source)
    for r in rain:
        P._warn_rain_range(trained, r, hours)
    windows = np.concatenate([P.rain_windows(r, hours) for r in rain])
    group_keys = [(_ENSEMBLE_KEY, k) for k in keys for _ in hours]
    fields = {"elevation": elevation, "prior": priors}
    n_tiles = 1 if plan.whole else len(tiling.tile_windows(terrain.shape, plan.window, overlap))
    n_groups = n_members * n_hours

    from tqdm import tqdm

    with (tqdm(total=n_tiles * n_groups * samples, desc="ensemble", unit="map", disable=not progress) as bar,
          trained.inference(plan.attention_window, plan.precision)):
        fn = P._MapSampler(trained, windows, hours * n_members, nfe=nfe, sampler=sampler, members=samples,
                           stochastic=stochastic, seed=seed, device=device, maps_per_call=plan.maps_per_call,
                           thresholds=P.THRESHOLDS_M, progress=bar.update, keys=group_keys, keep_maps=True)
        if plan.whole:
            maps = tiling.predict_whole(fn, fields, plan.window)
        else:
            maps = tiling.predict_tiled(fn, fields, plan.window, overlap,
                                        batch_size=max(1, plan.maps_per_call // (n_groups * samples)))
    maps = maps.reshape((n_members, n_hours, samples) + terrain.shape).transpose(0, 2, 1, 3, 4).astype(np.float32)
    maps[..., ~valid] = np.nan
    info = P._provenance(trained, nfe, sampler, samples, seed, device, trained.prior, boundary, coarse_factor,
                         plan, overlap, n_tiles, elevation_offset_m, terrain.dx)
    info.update({"rain_members": int(n_members), "bridge_samples_per_member": int(samples),
                 "forecast_members": int(n_members * samples),
                 "member_noise": "bridge noise seeded per (rain member, sample, window), the same at every hour"})
    info["wall_time_s"] = time.perf_counter() - t_start
    return maps, info


def ensemble_products(maps, hours, thresholds=P.THRESHOLDS_M, quantiles=QUANTILES) -> dict:
    """Forecast products of member maps (N, H, ny, nx) [m] at ``hours`` (NaN cells stay NaN).

    Per hour: ``depth_mean``, ``depth_std`` (H, ny, nx), ``depth_quantile`` (H, Q, ny, nx),
    ``p_exceed`` (H, K, ny, nx). Over the horizon (the requested hours): ``max_depth_mean`` and
    ``max_depth_quantile`` (Q, ny, nx) of each member's maximum depth, ``p_ever_exceed`` (K, ny,
    nx), the fraction of members deeper than the threshold at some hour, and ``arrival_time``
    (K, ny, nx) [h], the mean over those members of the first hour at which they are, NaN where
    no member is (conditional on exceedance: read it with ``p_ever_exceed``).
    """
    d = np.asarray(maps, np.float64)
    hours = np.asarray(hours, np.float64)
    thr = np.asarray(thresholds, np.float64)
    q = np.asarray(quantiles, np.float64)
    nan = np.isnan(d).any(axis=(0, 1))
    x = np.nan_to_num(d)
    deeper = x[:, :, None] > thr[None, None, :, None, None]  # (N, H, K, ny, nx)
    ever = deeper.any(axis=1)  # (N, K, ny, nx)
    first = np.where(ever, hours[np.argmax(deeper, axis=1)], np.nan)
    with np.errstate(invalid="ignore"):
        arrival = np.nansum(first, axis=0) / ever.sum(axis=0)
    peak = x.max(axis=1)
    out = {
        "depth_mean": x.mean(axis=0), "depth_std": x.std(axis=0),
        "depth_quantile": np.moveaxis(np.quantile(x, q, axis=0), 0, 1),
        "p_exceed": deeper.mean(axis=0),
        "max_depth_mean": peak.mean(axis=0), "max_depth_quantile": np.quantile(peak, q, axis=0),
        "p_ever_exceed": ever.mean(axis=0), "arrival_time": arrival,
    }
    for k, v in out.items():
        v = v.astype(np.float32)
        v[..., nan] = np.nan
        out[k] = v
    return out
