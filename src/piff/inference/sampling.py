"""Predict every test map of a dataset (DEM x held-out storm x hour) at several NFE.

Works for the trained kinds (``piff``: the bridge sampled with exactly NFE network
evaluations; ``regression``: the one-shot U-Net, NFE 1) and for the baselines that need no
training (``spm``: the fill-and-spill map looked up from the window's rain; ``coarse_prior``:
the coarse dynamic solver, downscaled), so that all of them are scored by the same code.
Output: ``results/<name>/samples.nc`` (layout in ``docs/data.md``).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext

import numpy as np
import torch
import xarray as xr

from piff import __version__
from piff.choices import BASELINE_KINDS, DEFAULT_PRECISION, EXPERIMENT_TYPES, STOCHASTIC_SAMPLERS, TRAINED_KINDS
from piff.data import format as fmt
from piff.data.torch_dataset import FloodMapDataset
from piff.errors import PiffInputError

log = logging.getLogger("piff.sample")


def sample_test_set(dataset_path, *, kind: str, model_path=None, nfe=(1, 2, 5, 10), sampler="euler", members=1,
                    seed=0, hours=None, batch_size=32, device="cpu", experiment="", split="test",
                    precision=DEFAULT_PRECISION) -> xr.Dataset:
    """Predictions (nfe, member, dem, storm, time, y, x) in metres for one split (default test).
    ``precision``: the network's arithmetic (``piff.model.trained.TrainedModel.inference``)."""
    if kind not in EXPERIMENT_TYPES:
        raise PiffInputError("kind", f"{kind!r} is not one of {EXPERIMENT_TYPES}")
    trained = None
    prior = "coarse" if kind == "coarse_prior" else "spm"
    trained_precision = ""  # the network's arithmetic, for the metadata (no network: none)
    if kind in TRAINED_KINDS:
        from piff.model.trained import load_trained, network_precision

        trained = load_trained(model_path, device=device)
        trained_precision = network_precision(precision, device)
        prior = trained.experiment["prior"]
        nfe = (1,) if kind == "regression" else tuple(nfe)
        members = members if sampler in STOCHASTIC_SAMPLERS and kind == "piff" else 1
    else:
        nfe, members = (0,), 1
    data = FloodMapDataset(dataset_path, split, hours=hours, prior=prior, with_physics=False)
    ds_in = fmt.open_dataset(dataset_path)
    dems = (ds_in["dem"].values if "dem" in ds_in.coords else np.arange(ds_in.sizes["dem"]))[data.dems]
    hours_out = np.array(data.hours, dtype=np.int32)
    ny, nx = data.shape
    depth = np.zeros((len(nfe), members, len(data.dems), len(data.storm_ids), len(hours_out), ny, nx), np.float32)
    dem_pos = {int(d): i for i, d in enumerate(data.dems)}
    seconds = np.zeros(len(nfe))
    storm_pos = {int(s): i for i, s in enumerate(data.storm_ids)}
    hour_pos = {int(h): i for i, h in enumerate(hours_out)}
    # on the model's device, so that GPU sampling is reproducible too
    gen = torch.Generator(device=device).manual_seed(int(seed))
    # the fast inference path of piff predict, so that seconds_per_map is what a user gets
    with trained.inference(precision=precision) if trained else nullcontext():
        for k, n in enumerate(nfe):
            t0 = time.perf_counter()
            for start in range(0, len(data), batch_size):
                batch = torch.utils.data.default_collate(
                    [data[i] for i in range(start, min(start + batch_size, len(data)))])
                for m in range(members):
                    pred = _predict(trained, kind, batch, n, sampler, gen, device)
                    for b in range(pred.shape[0]):
                        d, s, h = (dem_pos[int(batch["dem"][b])], storm_pos[int(batch["storm"][b])],
                                   hour_pos[int(batch["hour"][b])])
                        depth[k, m, d, s, h] = pred[b, 0]
            seconds[k] = (time.perf_counter() - t0) / (len(data) * members)
            if kind == "coarse_prior" and "prior_coarse_wall_time" in ds_in:
                # the lookup is free; the real cost is the coarse simulation, spread over its T maps
                seconds[k] += float(ds_in["prior_coarse_wall_time"].mean()) / (ds_in.sizes["time"] - 1)
            log.info("%s nfe %d: %d maps x %d members, %.4f s per map", kind, n, len(data), members, seconds[k])

    out = xr.Dataset(coords={
        "nfe": ("nfe", np.array(nfe, np.int32), {"long_name": "network evaluations per map (0: no network)"}),
        "member": ("member", np.arange(members, dtype=np.int32), {"long_name": "ensemble member"}),
        "dem": ("dem", dems.astype(np.int32), {"long_name": "DEM index in the dataset"}),
        "storm": ("storm", data.storm_ids.astype(np.int32), {"long_name": "storm id in the dataset"}),
        "time": ("time", hours_out, {"units": "h", "long_name": "hours since storm start"}),
        "y": ds_in["y"], "x": ds_in["x"]})
    out["depth"] = xr.DataArray(depth, dims=("nfe", "member", "dem", "storm", "time", "y", "x"),
                                attrs={"units": "m", "long_name": "predicted water depth above the bed"})
    out["seconds_per_map"] = xr.DataArray(seconds.astype(np.float32), dims=("nfe",),
                                          attrs={"units": "s", "long_name": "mean wall time to predict one map"})
    if "crs" in ds_in:
        out["crs"] = ds_in["crs"]
        out["depth"].attrs["grid_mapping"] = "crs"
    out.attrs.update({
        "Conventions": fmt.CONVENTIONS, "title": f"piff predictions of {experiment or kind}",
        "source": f"piff {__version__}", "experiment": experiment, "kind": kind, "split": split,
        "dataset": str(dataset_path), "dataset_sha256": fmt.file_sha256(dataset_path),
        "sampler": sampler if trained else "",
        "seed": int(seed), "device": str(device),
        "precision": trained_precision,
        "model": str(model_path or ""), "model_fingerprint": trained.meta["fingerprint"] if trained else "",
        "prior": prior, "cell_size_m": float(ds_in.attrs["cell_size_m"]),
    })
    ds_in.close()
    return out


def _predict(trained, kind, batch, nfe, sampler, gen, device) -> np.ndarray:
    if kind in BASELINE_KINDS:
        return batch["prior"].numpy()  # the dataset already looked the prior up for this map
    b = {k: v.to(device) for k, v in batch.items()}
    out = trained.predict(b["elevation"], b["prior"], b["rain_window"], nfe=nfe, sampler=sampler, generator=gen)
    return out.float().cpu().numpy()
