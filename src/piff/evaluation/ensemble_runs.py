"""The ensemble verification of the workflow (docs/ensemble.md, ``workflow/rules/ensemble.smk``).

For the held-out storms chosen in the config's ``ensemble:`` section, a seeded rainfall-forecast
error model (:class:`piff.hydro.rain_ensemble.ForecastErrorModel`) makes N forecast members per
storm (:func:`rain_members_dataset`). Every system then runs on every member, on the chosen DEMs:

* the solver, with the dataset's own settings through the simulate rule's entry point
  (:func:`piff.data.preprocess.solve`): the reference ensemble (:func:`solver_members`);
* each trained experiment through the ``piff predict`` pipeline (:func:`model_members`):
  the bridge with ``samples`` bridge samples per rain member, the U-Net one map per member;
* each trained experiment anchored on the solver's run of the members' central forecast, made
  and timed as one forecast run (:func:`anchored_model_members`).

The truth is the solver on the real storm (the dataset's depth). :func:`summarize` scores every
system (:mod:`piff.evaluation.ensemble`) and times it. One layout for all members files
(:func:`members_dataset`): ``depth`` (dem, storm, member, time, y, x) [m] and ``wall_time``
(dem, storm) [s], the wall time of one ensemble (all members of one storm on one DEM).
"""

from __future__ import annotations

import functools
import json
import logging
import time

import numpy as np
import pandas as pd
import xarray as xr

from piff import __version__, cf
from piff.choices import ANCHORED_SUFFIX, DRESSED_SUFFIX
from piff.data import format as fmt
from piff.errors import PiffInputError
from piff.evaluation import default_nfe
from piff.evaluation import ensemble as S
from piff.hydro.rain_ensemble import ForecastErrorModel
from piff.hydro.terrain import Terrain

log = logging.getLogger(__name__)

SOLVER = "solver"  # the reference system's name in the summary (and its folder, results/ensemble/solver)
# a system's run on the members' central forecast, beside its members file (the validation
# members' solver control, which the anchored dressing is fitted with)
CONTROL_FILE = "control.nc"
# The control's bridge-noise key within a storm: apart from every member's (0..members-1), so a
# stochastic control does not share member 0's noise (which would cancel in the anchoring).
_CONTROL_KEY = 9_999


# ----------------------------------------------------------------------------- cases and rain
def verification_cases(ds: xr.Dataset, cfg: dict) -> tuple[list[int], list[int]]:
    """(storm ids, DEM indices) of the verification. ``cfg["storms"]``: held-out storm ids, or
    null for ``cfg["n_storms"]`` of them spread evenly over the test split (storm order);
    ``cfg["dems"]``: DEM indices, or null for every DEM."""
    test = [int(s) for s in fmt.storm_ids_in_split(ds, "test")]
    if cfg.get("storms"):
        storms = [int(s) for s in cfg["storms"]]
        bad = [s for s in storms if s not in test]
        if bad:
            raise PiffInputError("config: ensemble.storms", f"storms {bad} are not held-out (test) storms of the "
                                                            f"dataset (test storms: {test})")
    else:
        n = min(int(cfg.get("n_storms", 3)), len(test))
        storms = [test[i] for i in np.unique(np.linspace(0, len(test) - 1, n).round().astype(int))]
    n_dems = ds.sizes["dem"]
    dems = list(range(n_dems)) if cfg.get("dems") is None else [int(d) for d in cfg["dems"]]
    if any(not 0 <= d < n_dems for d in dems):
        raise PiffInputError("config: ensemble.dems", f"{dems}: the dataset has DEMs 0..{n_dems - 1}")
    return storms, dems


def validation_cases(ds: xr.Dataset, dataset_path) -> tuple[list[int], list[int]]:
    """(storm ids, DEM indices) the anchored dressing is fitted on: the validation storms on the
    training DEMs; the test storms stay out."""
    storms = [int(s) for s in fmt.storm_ids_in_split(ds, "val")]
    if not storms:
        raise PiffInputError(dataset_path, "has no validation storms to fit the anchored dressing on (its split "
                                           "sets no val_shapes, val_totals_mm or val_ids)")
    return storms, [int(d) for d in fmt.dems_in_split(ds, "val")]


def error_model(ds: xr.Dataset, cfg: dict) -> ForecastErrorModel:
    """The config's forecast-error model, with intensities capped at the dataset's storm cap."""
    em = cfg.get("error_model", {})
    cap = json.loads(ds.attrs.get("config_json", "{}")).get("storms", {}).get("cap_mm_per_h")
    kwargs = {k: em[k] for k in ("sigma_log", "rho", "max_shift_h", "centre") if k in em}
    return ForecastErrorModel(**kwargs, seed=int(cfg.get("seed", 0)),
                              **({"cap_mm_per_h": float(cap)} if cap else {}))


def rain_members_dataset(dataset_path, cfg: dict, validation: bool = False) -> xr.Dataset:
    """``rainfall_member`` (storm, member, hour) [mm/h] of the verification storms, the observed
    ``rainfall`` and the members' central forecast ``rainfall_centre`` (storm, hour) [mm/h], and
    each member's timing error ``shift`` (storm, member) [h]. With ``validation``, of the
    dataset's validation storms on its training DEMs instead (:func:`validation_cases`; what the
    anchored dressing is fitted on), attribute ``split`` saying which."""
    ds = fmt.open_dataset(dataset_path, load=True)
    storms, dems = validation_cases(ds, dataset_path) if validation else verification_cases(ds, cfg)
    split = "val" if validation else "test"
    model = error_model(ds, cfg)
    n = int(cfg["members"])
    observed = ds["rainfall"].sel(storm=storms).values[:, 1:].astype(np.float64)  # drop time 0 (no rain)
    members = np.stack([model.members(r, s, n) for r, s in zip(observed, storms)])
    centres = np.stack([model.centre_of(r, s) for r, s in zip(observed, storms)])
    shifts = np.array([[model.shift(s, m) for m in range(n)] for s in storms], np.int32)
    out = xr.Dataset(
        {"rainfall_member": (("storm", "member", "hour"), members.astype(np.float32),
                             {"units": "mm h-1", "long_name": "forecast member's rainfall intensity over the "
                                                              "interval (k-1, k]"}),
         "rainfall": (("storm", "hour"), observed.astype(np.float32),
                      {"units": "mm h-1", "long_name": "observed (real) rainfall intensity over (k-1, k]"}),
         "rainfall_centre": (("storm", "hour"), centres.astype(np.float32),
                             {"units": "mm h-1", "long_name": f"the members' central forecast ({model.centre})"}),
         "shift": (("storm", "member"), shifts, {"units": "h", "long_name": "member's timing error from the "
                                                                              "central forecast (+ = late)"})},
        coords={"storm": ("storm", np.array(storms, np.int32), {"long_name": "storm id in the dataset"}),
                "member": ("member", np.arange(n, dtype=np.int32), {"long_name": "rainfall forecast member"}),
                "hour": ("hour", np.arange(1, observed.shape[1] + 1, dtype=np.int32),
                         {"units": "h", "long_name": "end of the rainfall hour"}),
                "dem": ("dem", np.array(dems, np.int32), {"long_name": "DEM index in the dataset"})},
        attrs={"Conventions": cf.CONVENTIONS, "split": split,
               "title": f"piff rainfall-forecast members of the {'validation' if validation else 'held-out'} storms",
               "source": f"piff {__version__} hydro.rain_ensemble.ForecastErrorModel",
               "error_model": json.dumps({"sigma_log": model.sigma_log, "rho": model.rho,
                                          "max_shift_h": model.max_shift_h, "cap_mm_per_h": model.cap_mm_per_h,
                                          "seed": model.seed, "centre": model.centre}),
               "dataset": str(dataset_path), "dataset_sha256": fmt.file_sha256(dataset_path)})
    ds.close()
    return out


def dataset_terrain(ds: xr.Dataset, dem: int) -> Terrain:
    """DEM ``dem`` of a dataset as a Terrain (local metric grid)."""
    z = ds["elevation"].isel(dem=dem).values.astype(np.float32)
    nodata = ds["nodata"].isel(dem=dem).values.astype(bool) if "nodata" in ds else np.zeros(z.shape, bool)
    z = np.where(nodata, np.nan, z).astype(np.float32)
    return Terrain(z, float(ds.attrs["cell_size_m"]), nodata_mask=nodata if nodata.any() else None,
                   name=str(ds["dem_name"].values[dem]))


def members_dataset(ds: xr.Dataset, depth, wall, rain: xr.Dataset, hours, system: str, kind: str,
                    attrs: dict | None = None) -> xr.Dataset:
    """The members file of one system: depth (dem, storm, member, time, y, x), wall_time (dem, storm)."""
    out = xr.Dataset(
        {"depth": (("dem", "storm", "member", "time", "y", "x"), np.asarray(depth, np.float32),
                   {"units": "m", "long_name": "water depth of each forecast member", "cell_methods": "time: point"}),
         "wall_time": (("dem", "storm"), np.asarray(wall, np.float32),
                       {"units": "s", "long_name": "wall time of the ensemble (every member of the storm)"})},
        coords={"dem": rain["dem"], "storm": rain["storm"],
                "member": ("member", np.arange(np.shape(depth)[2], dtype=np.int32),
                           {"long_name": "forecast member (rain member x bridge sample, rain member major)"}),
                "time": cf.time_coord(np.asarray(hours, np.int32)), "y": ds["y"], "x": ds["x"]},
        attrs={"Conventions": cf.CONVENTIONS, "title": f"piff ensemble members of {system}",
               "source": f"piff {__version__}", "system": system, "kind": kind,
               "rain_members": int(rain.sizes["member"]), **(attrs or {})})
    return out


# ----------------------------------------------------------------------------- the systems
def forecast_rain(rain_path, control: bool = False) -> xr.Dataset:
    """The rain file with ``rainfall_member`` (storm, member, hour) [mm/h] the members to run:
    the forecast members, or with ``control`` the members' central forecast as the only member
    (the control run of a solver-anchored ensemble, piff.inference.anchoring)."""
    rain = xr.load_dataset(rain_path)
    if not control:
        return rain
    centre = rain["rainfall_centre"].expand_dims(member=1, axis=1)
    return rain.isel(member=[0]).assign(rainfall_member=centre.assign_coords(member=[0]))


def solver_members(dataset_path, rain_path, hours, progress: bool = False, control: bool = False) -> xr.Dataset:
    """The reference ensemble: the solver (the dataset's settings and boundaries) on every member
    (with ``control``, on the members' central forecast only)."""
    from piff.data.preprocess import solve, storm_batches

    ds = fmt.open_dataset(dataset_path)
    rain = forecast_rain(rain_path, control)
    hours = [int(h) for h in hours]
    scfg = _solver_settings(ds)
    dems, storms = rain["dem"].values, rain["storm"].values
    n = rain.sizes["member"]
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    depth = np.zeros((len(dems), len(storms), n, len(hours), ny, nx), np.float32)
    wall = np.zeros((len(dems), len(storms)))
    warmup = 0.0
    for i, d in enumerate(dems):
        ter = dataset_terrain(ds, int(d))
        boundary = str(ds["boundary"].values[int(d)])
        batches = storm_batches(n, ter.elevation.size)
        # one untimed hour first: torch.compile's (and the first call's) set-up is not forecast time
        t0 = time.perf_counter()
        solve(ter, rain["rainfall_member"].values[0, batches[0], :1], scfg, boundary)
        warmup += time.perf_counter() - t0
        for j in range(len(storms)):
            t0 = time.perf_counter()
            for batch in batches:
                res = solve(ter, rain["rainfall_member"].values[j, batch], scfg, boundary, progress=progress)
                for b, m in enumerate(batch):
                    depth[i, j, m] = res.depth[b][hours]
            wall[i, j] = time.perf_counter() - t0
            log.info("solver ensemble dem %d storm %d: %d members, %.1f s", d, storms[j], n, wall[i, j])
    out = members_dataset(ds, depth, wall, rain, hours, SOLVER, "solver",
                          {"solver_settings": json.dumps(scfg), "warmup_s": warmup, **_control_attrs(control)})
    ds.close()
    return out


def model_nfe(trained, nfe, model_path) -> int:
    """The NFE a trained model's ensemble (and its dressing) runs at: ``nfe``, or for "default"
    the NFE the evaluation measured for this model (piff.evaluation.default_nfe); 1 for the
    regression's one shot."""
    if trained.kind == "regression":
        return 1
    return default_nfe.resolve(nfe, model_path, str(trained.meta.get("fingerprint", "")))


def fit_dressing(model_path, dataset_path, cfg: dict, device="cpu"):
    """A trained model's error dressing (piff.inference.dressing), fitted on the dataset's
    validation storms at the NFE and with the sampler its ensemble runs at."""
    from piff.inference.dressing import fit_on_validation
    from piff.model.trained import load_trained

    trained = load_trained(model_path, device=device)
    nfe = model_nfe(trained, cfg["nfe"], model_path)
    return fit_on_validation(model_path, dataset_path, kind=trained.kind, nfe=nfe, sampler=cfg["sampler"],
                             seed=int(cfg["seed"]), device=device)


def dressed_members(members_path, dressing_path, k: int) -> xr.Dataset:
    """A model ensemble with every member dressed into ``k`` maps (member-major) by the model's
    error dressing; each ensemble's wall time grows by the time the dressing took."""
    from piff.inference.dressing import read

    m = xr.load_dataset(members_path)
    dressing = read(dressing_path, fingerprint=str(m.attrs.get("model_fingerprint", "")))
    if int(dressing.attrs.get("nfe", -1)) != int(m.attrs.get("nfe", -2)):
        raise PiffInputError(dressing_path, f"fitted at NFE {dressing.attrs.get('nfe')}, but the ensemble "
                                            f"{members_path} ran at NFE {m.attrs.get('nfe')}")
    depth = m["depth"].values  # (dem, storm, member, time, y, x)
    out = np.zeros(depth.shape[:2] + (depth.shape[2] * k,) + depth.shape[3:], np.float32)
    wall = m["wall_time"].values.astype(np.float64).copy()
    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            t0 = time.perf_counter()
            dressed = dressing.apply(depth[i, j], k)  # (k, member, time, y, x)
            out[i, j] = np.swapaxes(dressed, 0, 1).reshape((-1,) + depth.shape[3:])
            wall[i, j] += time.perf_counter() - t0
    return _derived_members(m, out, wall, DRESSED_SUFFIX,
                            {"dressing_maps_per_member": int(k), "dressing": str(dressing_path)})


def _derived_members(m: xr.Dataset, depth, wall, suffix: str, attrs: dict) -> xr.Dataset:
    """A members file made from the members file ``m`` (dressed, anchored): the same DEMs, storms,
    hours and provenance, system "<m's system><suffix>"."""
    # members_dataset reads the DEMs, storms and rain-member count from the rain file's coordinates
    rain = xr.Dataset(coords={"dem": m["dem"], "storm": m["storm"],
                              "member": np.arange(int(m.attrs.get("rain_members", 0)))})
    kept = {a: v for a, v in m.attrs.items() if a not in ("Conventions", "title", "source", "system", "kind",
                                                          "rain_members")}
    return members_dataset(m, depth, wall, rain, m["time"].values, str(m.attrs.get("system", "")) + suffix,
                           str(m.attrs.get("kind", "")), {**kept, **attrs})


def _model_setup(model_path, cfg: dict, device):
    """The trained model and the predict_members options its ensembles run with."""
    from piff.model.trained import load_trained

    trained = load_trained(model_path, device=device)
    opts = dict(samples=int(cfg["samples"]), nfe=model_nfe(trained, cfg["nfe"], model_path), sampler=cfg["sampler"],
                seed=int(cfg["seed"]), device=device)
    return trained, opts


def _member_keys(storm, n: int, control: bool = False) -> list[int]:
    """The bridge-noise keys of a storm's ``n`` members (or of its control run)."""
    return [int(storm) * 10_000 + (_CONTROL_KEY if control else m) for m in range(n)]


def _model_attrs(info: dict) -> dict:
    return {k: v for k, v in info.items() if k in ("model", "model_fingerprint", "model_kind", "nfe", "sampler",
                                                   "bridge_samples_per_member", "inference", "member_noise")}


def model_members(model_path, dataset_path, rain_path, cfg: dict, *, experiment: str = "",
                  device="cpu", progress: bool = False, control: bool = False) -> xr.Dataset:
    """A trained experiment's ensemble: every rain member x ``cfg["samples"]`` bridge samples
    (stochastic sampler; the U-Net one map per member) through the piff predict pipeline (with
    ``control``, the members' central forecast only)."""
    from piff.inference.ensemble import predict_members

    trained, opts = _model_setup(model_path, cfg, device)
    ds = fmt.open_dataset(dataset_path)
    rain = forecast_rain(rain_path, control)
    hours = [int(h) for h in cfg["hours"]]
    dems, storms = rain["dem"].values, rain["storm"].values
    depth, wall, info = None, np.zeros((len(dems), len(storms))), {}
    warmup = 0.0
    for i, d in enumerate(dems):
        ter = dataset_terrain(ds, int(d))
        boundary = str(ds["boundary"].values[int(d)])
        t0 = time.perf_counter()  # untimed first call: the network's first-call set-up
        predict_members(trained, ter, rain["rainfall_member"].values[0, :1], hours[:1], boundary=boundary, **opts)
        warmup += time.perf_counter() - t0
        for j, s in enumerate(storms):
            t0 = time.perf_counter()
            maps, info = predict_members(trained, ter, rain["rainfall_member"].values[j], hours, boundary=boundary,
                                         member_keys=_member_keys(s, rain.sizes["member"], control),
                                         progress=progress, **opts)
            wall[i, j] = time.perf_counter() - t0
            if depth is None:
                depth = np.zeros((len(dems), len(storms), maps.shape[0] * maps.shape[1]) + maps.shape[2:], np.float32)
            depth[i, j] = maps.reshape((-1,) + maps.shape[2:])
            log.info("%s ensemble dem %d storm %d: %d maps, %.2f s", experiment, d, s, maps.size // maps[0, 0, 0].size,
                     wall[i, j])
    out = members_dataset(ds, depth, wall, rain, hours, experiment or trained.kind, trained.kind,
                          {**_model_attrs(info), "warmup_s": warmup, **_control_attrs(control)})
    ds.close()
    return out


def _control_attrs(control: bool) -> dict:
    return {"forecast": "control: the members' central forecast (rainfall_centre)"} if control else {}


def _solver_settings(ds: xr.Dataset) -> dict:
    return json.loads(ds.attrs.get("config_json", "{}")).get("solver", {})


def anchored_model_members(model_path, dataset_path, rain_path, cfg: dict, *, experiment: str = "",
                           device="cpu", progress: bool = False) -> xr.Dataset:
    """A trained experiment's ensemble anchored on the solver's control run, made as a forecast
    makes it (piff.inference.anchoring.anchored_ensemble): per DEM and storm, the model on every
    member and on the members' central forecast (the control), the solver (the dataset's settings)
    on the control alongside, and the anchoring. Each ensemble's wall time is that whole run; the
    members are those of :func:`model_members` (the same bridge noise), anchored."""
    trained, opts = _model_setup(model_path, cfg, device)
    ds = fmt.open_dataset(dataset_path)
    rain = xr.load_dataset(rain_path)
    scfg = _solver_settings(ds)
    hours = [int(h) for h in cfg["hours"]]
    dems, storms = rain["dem"].values, rain["storm"].values
    depth, wall, info = None, np.zeros((len(dems), len(storms))), {}
    totals = {"model_s": 0.0, "solver_control_s": 0.0, "alongside": 0}
    warmup = 0.0
    for i, d in enumerate(dems):
        ter = dataset_terrain(ds, int(d))
        boundary = str(ds["boundary"].values[int(d)])
        run = functools.partial(_anchored_case, trained, ter, boundary, rain, hours, opts, info, progress, scfg)
        # the first storm twice, the first run untimed: the network's set-up at this size and the
        # solver's compilation, in the threads they run in
        t0 = time.perf_counter()
        run(0)
        warmup += time.perf_counter() - t0
        for j, s in enumerate(storms):
            maps, timing = run(j)
            wall[i, j] = timing["wall_s"]
            for k in totals:
                totals[k] += timing[k]
            if depth is None:
                depth = np.zeros((len(dems), len(storms)) + maps.shape, np.float32)
            depth[i, j] = maps
            log.info("%s anchored ensemble dem %d storm %d: %.2f s (model %.2f s, solver control %.2f s%s)",
                     experiment, d, s, timing["wall_s"], timing["model_s"], timing["solver_control_s"],
                     ", alongside" if timing["alongside"] else "")
    cases = len(dems) * len(storms)
    attrs = {**_model_attrs(info), "warmup_s": warmup,
             "anchored_on": "the solver's run of the members' central forecast (piff.inference.anchoring)",
             "solver_settings": json.dumps(scfg), "model_s_total": totals["model_s"],
             "solver_control_s_total": totals["solver_control_s"],
             "solver_control_alongside": f"{totals['alongside']} of {cases} ensembles"}
    out = members_dataset(ds, depth, wall, rain, hours, (experiment or trained.kind) + ANCHORED_SUFFIX, trained.kind,
                          attrs)
    ds.close()
    return out


def _anchored_case(trained, terrain, boundary, rain: xr.Dataset, hours, opts, info, progress, solver_settings, j):
    """Storm ``j`` of a rain file, anchored (piff.inference.anchoring.anchored_ensemble): the
    model's maps of its members and of their control (with several bridge samples of the
    control, their mean: the members keep their own noise), the solver's control run alongside."""
    from piff.inference.anchoring import anchored_ensemble
    from piff.inference.ensemble import predict_members

    storm, centre = rain["storm"].values[j], rain["rainfall_centre"].values[j]
    member_rain = rain["rainfall_member"].values[j]

    def run_model():
        maps, run_info = predict_members(trained, terrain, member_rain, hours, boundary=boundary,
                                         member_keys=_member_keys(storm, len(member_rain)), progress=progress, **opts)
        control, _ = predict_members(trained, terrain, centre[None], hours, boundary=boundary,
                                     member_keys=_member_keys(storm, 1, control=True), **opts)
        info.update(run_info)
        return maps.reshape((-1,) + maps.shape[2:]), control[0].mean(axis=0)

    return anchored_ensemble(run_model, terrain, centre, hours, boundary, solver_settings, network=trained.model.net)


def _anchored(m, model_c, solver_c, members_path, control_path, solver_control_path) -> xr.Dataset:
    """Members ``m`` anchored on the model's (``model_c``) and the solver's (``solver_c``) control
    runs, as loaded members files; the paths name them in errors and attributes."""
    from piff.inference.anchoring import anchor

    for path, c in ((control_path, model_c), (solver_control_path, solver_c)):
        if "forecast" not in c.attrs:
            raise PiffInputError(path, "is not a control run (no 'forecast' attribute): anchoring needs the runs on "
                                       "the members' central forecast")
        if not all(np.array_equal(c[k], m[k]) for k in ("dem", "storm", "time")):
            raise PiffInputError(path, f"covers other DEMs, storms or hours than the ensemble {members_path}")
    if model_c.attrs.get("model_fingerprint") != m.attrs.get("model_fingerprint"):
        raise PiffInputError(control_path, f"is another model's control run than the ensemble {members_path}")
    depth = m["depth"].values  # (dem, storm, member, time, y, x)
    out = np.zeros_like(depth)
    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            # several bridge samples of the control: anchor on their mean, the members keep their own noise
            out[i, j] = anchor(depth[i, j], model_c["depth"].values[i, j].mean(axis=0),
                               solver_c["depth"].values[i, j, 0])
    return _derived_members(m, out, m["wall_time"].values, ANCHORED_SUFFIX,
                            {"anchored_on": "the solver's run of the members' central forecast "
                                            "(piff.inference.anchoring)",
                             "model_control": str(control_path), "solver_control": str(solver_control_path)})


def fit_anchored_dressing(model_path, dataset_path, rain_path, solver_path, solver_control_path, cfg: dict,
                          device="cpu"):
    """The error dressing of a model's *anchored* members (piff.inference.dressing): residuals
    ``solver(member) - anchored member`` on the validation storms' forecast members ``rain_path``
    (:func:`rain_members_dataset` with ``validation``), given the solver's runs of them and of
    their control (``solver_path``, ``solver_control_path``: shared by every model). The raw
    model's dressing would be far too wide for anchored members: what is left of their error is
    the model's error in the members' differences."""
    from piff.inference.dressing import fit

    rain = xr.load_dataset(rain_path)
    if rain.attrs.get("split") != "val":
        raise PiffInputError(rain_path, f"holds the {rain.attrs.get('split', 'unknown')!r} split's storms, not the "
                                        "validation storms: the anchored dressing must not see the test storms")
    solver = xr.load_dataset(solver_path)
    # before any model run: the solver's members must be these rain members at these hours
    if not (all(np.array_equal(solver[k], rain[k]) for k in ("dem", "storm"))
            and solver.sizes["member"] == rain.sizes["member"]
            and [int(h) for h in solver["time"].values] == [int(h) for h in cfg["hours"]]):
        raise PiffInputError(solver_path, f"covers other DEMs, storms, hours or members than {rain_path} at hours "
                                          f"{list(cfg['hours'])}")
    members = model_members(model_path, dataset_path, rain_path, cfg, device=device)
    anchored = _anchored(members, model_members(model_path, dataset_path, rain_path, cfg, device=device,
                                                control=True),
                         xr.load_dataset(solver_control_path), "validation members", "validation control (model)",
                         solver_control_path)
    # anchored members are rain member x bridge sample, rain member major
    samples = anchored.sizes["member"] // solver.sizes["member"]
    truth = np.repeat(solver["depth"].values, samples, axis=2)
    dems = [int(d) for d in rain["dem"].values]
    with fmt.open_dataset(dataset_path) as ds:
        valid = valid_cells(ds, dems)
    m = members.attrs
    attrs = {"model": str(model_path), "model_fingerprint": m.get("model_fingerprint", ""),
             "model_kind": m.get("model_kind", ""), "nfe": int(m.get("nfe", 1)), "sampler": m.get("sampler", ""),
             "dataset": str(dataset_path), "dataset_sha256": fmt.file_sha256(dataset_path), "split": "val",
             "anchored": 1, "rain_members": int(solver.sizes["member"]),
             "storms": " ".join(str(int(s)) for s in rain["storm"].values), "dems": " ".join(map(str, dems)),
             "error_model": rain.attrs["error_model"]}
    return fit(anchored["depth"].values, truth, valid[:, None, None, None], attrs)


# ----------------------------------------------------------------------------- scores
def valid_cells(ds: xr.Dataset, dems) -> np.ndarray:
    """(dem, y, x): the cells of the dataset's DEMs ``dems`` that are not nodata."""
    dems = [int(d) for d in dems]
    if "nodata" not in ds:
        return np.ones((len(dems),) + ds["y"].shape + ds["x"].shape, bool)
    return ~ds["nodata"].values[dems].astype(bool)


def truth_and_valid(ds: xr.Dataset, members: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The truth of a members file's cases, depth (dem, storm, time, y, x) [m] of the solver on the
    real storms, and the valid cells of its DEMs (dem, y, x; :func:`valid_cells`)."""
    truth = ds["depth"].sel(dem=members["dem"].values, storm=members["storm"].values, time=members["time"].values)
    return truth.values.astype(np.float64), valid_cells(ds, members["dem"].values)


def summarize(dataset_path, member_files: dict) -> dict:
    """Score every system's members file against the truth (the solver on the real storm).

    member_files : {system: path}; the solver's as ``SOLVER``. Returns {"summary": DataFrame (one
    row per system and terrain all / seen / unseen), "reliability": DataFrame, "spread_skill":
    DataFrame, "crps_map": xr.Dataset (system, dem, y, x)}.
    """
    ds = fmt.open_dataset(dataset_path)
    systems = {name: xr.load_dataset(p) for name, p in member_files.items()}
    ref = next(iter(systems.values()))
    dems, storms, hours = ref["dem"].values, ref["storm"].values, ref["time"].values
    terrain_of = fmt.terrain_of_dems(ds)
    truth, valid = truth_and_valid(ds, ref)
    train = [int(s) for s in fmt.storm_ids_in_split(ds, "train")]
    clim = {t: np.stack([S.climatology(ds["depth"].sel(dem=int(d), storm=train, time=hours).values, t)
                         for d in dems]) for t in S.BRIER_THRESHOLDS_M}  # (D, H, y, x)
    rows, rel_rows, ss_rows = [], [], []
    crps_maps = {}
    for name, m in systems.items():
        if not (np.array_equal(m["dem"], dems) and np.array_equal(m["storm"], storms)
                and np.array_equal(m["time"], hours)):
            raise PiffInputError(member_files[name], "covers other DEMs, storms or hours than the other systems")
        ens = m["depth"].values.astype(np.float64)  # (D, S, N, H, y, x)
        ens = np.nan_to_num(np.moveaxis(ens, 2, 0))  # (N, D, S, H, y, x)
        crps_cells = S.crps(truth, ens)  # (D, S, H, y, x)
        crps_maps[name] = np.where(valid, crps_cells.mean(axis=(1, 2)), np.nan)
        for terrain in ("all", "seen", "unseen"):
            pick = [i for i, d in enumerate(dems) if terrain == "all" or terrain_of[int(d)] == terrain]
            if not pick:
                continue
            mask = np.broadcast_to(valid[pick][:, None, None], truth[pick].shape)
            e = ens[:, pick][:, mask]
            o = truth[pick][mask]
            c = {t: np.broadcast_to(clim[t][pick][:, None], truth[pick].shape)[mask] for t in clim}
            # each case's storm: the bootstrap's block (one storm's cells share its rain's luck)
            storm_of = np.broadcast_to(storms[None, :, None, None, None], truth[pick].shape)[mask]
            sc = S.score(e, o, c, groups=storm_of)
            wall = float(m["wall_time"].values[pick].sum())
            rows.append({"system": name, "kind": m.attrs.get("kind", ""), "terrain": terrain,
                         "members": sc["members"], "rain_members": int(m.attrs.get("rain_members", 0)),
                         "dems": len(pick), "storms": len(storms), "hours": len(hours), "cases": sc["cases"],
                         "crps_m": sc["crps"], "crps_reliability_m": sc["crps_reliability"],
                         "crps_potential_m": sc["crps_potential"], "mae_mean_m": sc["mae_mean"],
                         **{k: sc[k] for k in sc if k.startswith(("brier_", "bss_", "reliability_gap_"))
                            and not isinstance(sc[k], dict)},
                         "spread_m": sc["spread"], "rmse_mean_m": sc["rmse"],
                         "spread_skill_ratio": sc["spread_skill_ratio"],
                         "wall_s": wall, "wall_s_per_ensemble": wall / (len(pick) * len(storms))})
            if terrain != "all":
                continue
            for t in S.BRIER_THRESHOLDS_M:
                table = sc[f"reliability_{t:g}"]
                for b in range(len(table["count"])):
                    rel_rows.append({"system": name, "threshold_m": t, **{k: table[k][b] for k in table}})
            for b in range(len(sc["spread_skill"]["count"])):
                ss_rows.append({"system": name, "bin": b, **{k: sc["spread_skill"][k][b] for k in ("count", "spread",
                                                                                                  "rmse")}})
    summary = pd.DataFrame(rows)
    if SOLVER in systems:
        for terrain in summary["terrain"].unique():
            at = summary["terrain"] == terrain
            solver = summary[at & (summary["system"] == SOLVER)]
            if len(solver):
                summary.loc[at, "crps_vs_solver"] = summary.loc[at, "crps_m"] / float(solver["crps_m"].iloc[0])
                # what ideal recalibration of these members would leave (Hersbach's potential)
                summary.loc[at, "crps_potential_vs_solver"] = (summary.loc[at, "crps_potential_m"]
                                                               / float(solver["crps_m"].iloc[0]))
                summary.loc[at, "speedup_vs_solver"] = float(solver["wall_s"].iloc[0]) / summary.loc[at, "wall_s"]
    crps_map = xr.Dataset(
        {"crps": (("system", "dem", "y", "x"), np.stack(list(crps_maps.values())).astype(np.float32),
                  {"units": "m", "long_name": "CRPS of the depth ensemble, mean over storms and hours"})},
        coords={"system": ("system", list(crps_maps)), "dem": ("dem", dems.astype(np.int32)),
                "y": ds["y"], "x": ds["x"]},
        attrs={"Conventions": cf.CONVENTIONS, "title": "piff ensemble verification: CRPS per cell",
               "source": f"piff {__version__}", "dataset": str(dataset_path),
               "storms": " ".join(str(int(s)) for s in storms), "hours": " ".join(str(int(h)) for h in hours)})
    ds.close()
    return {"summary": summary, "reliability": pd.DataFrame(rel_rows), "spread_skill": pd.DataFrame(ss_rows),
            "crps_map": crps_map}


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary table as markdown (the solver first, then by CRPS)."""
    cols = ["system", "kind", "terrain", "members", "crps_m", "crps_vs_solver", "crps_reliability_m",
            "crps_potential_vs_solver", "mae_mean_m", "brier_0.1",
            "bss_0.1", "brier_0.3", "bss_0.3", "reliability_gap_0.1",
            *(f"reliability_gap_0.1_{q}" for q in S.BOOTSTRAP_NAMES), "reliability_gap_0.3", "spread_skill_ratio",
            "wall_s", "speedup_vs_solver"]
    cols = [c for c in cols if c in summary]
    df = summary.assign(_ref=summary["system"] != SOLVER).sort_values(["terrain", "_ref", "crps_m"])[cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else f"{v:.4g}"
    return str(v)


def plot_reliability(reliability: pd.DataFrame, path) -> None:
    """Reliability diagram: observed frequency against mean forecast probability per bin, one
    panel per threshold, one line per system (bins holding < MIN_BIN_FRACTION of cases hollow;
    bars: the storm bootstrap's range of the others, where the table has it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from piff.atomic import atomic_path

    thresholds = sorted(reliability["threshold_m"].unique())
    fig, axes = plt.subplots(1, len(thresholds), figsize=(4.2 * len(thresholds), 4), squeeze=False)
    for ax, t in zip(axes[0], thresholds):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
        for name, g in reliability[reliability["threshold_m"] == t].groupby("system", sort=False):
            g = g[g["count"] > 0]
            big = g["fraction"] >= S.MIN_BIN_FRACTION
            line, = ax.plot(g["forecast"], g["observed"], "-", lw=1, label=name)
            low, high = (f"observed_{q}" for q in S.BOOTSTRAP_NAMES)
            if low in g:  # the storm bootstrap's range of the judged bins
                ax.vlines(g["forecast"][big], g[low][big], g[high][big], lw=0.8, alpha=0.6, color=line.get_color())
            ax.plot(g["forecast"][big], g["observed"][big], "o", color=line.get_color())
            ax.plot(g["forecast"][~big], g["observed"][~big], "o", mfc="none", color=line.get_color())
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability", ylabel="observed frequency",
               title=f"P(depth > {t:g} m)")
        ax.set_aspect("equal")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_spread_skill(spread_skill: pd.DataFrame, path) -> None:
    """Spread-skill plot: RMSE of the ensemble mean against the ensemble spread per spread bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from piff.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    top = float(max(spread_skill["spread"].max(), spread_skill["rmse"].max(), 1e-3)) * 1.05
    ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--", label="RMSE = spread")
    for name, g in spread_skill.groupby("system", sort=False):
        ax.plot(g["spread"], g["rmse"], "o-", lw=1, label=name)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="ensemble spread (m)", ylabel="RMSE of the ensemble mean (m)",
           title="spread-skill")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_summary(dataset_path, member_files: dict, outputs) -> dict:
    """:func:`summarize`, then write ``outputs`` (csv, md, reliability_csv, spread_skill_csv,
    crps_map, reliability, spread_skill: the ensemble_summary rule's named outputs)."""
    from piff.atomic import atomic_path

    result = summarize(dataset_path, member_files)
    for key in ("summary", "reliability", "spread_skill"):
        path = {"summary": outputs.csv, "reliability": outputs.reliability_csv,
                "spread_skill": outputs.spread_skill_csv}[key]
        with atomic_path(path, suffix=".csv") as tmp:
            result[key].to_csv(tmp, index=False, float_format="%.6g")
    cf.write_netcdf(result["crps_map"], outputs.crps_map, nan_fill=("crps",))
    plot_reliability(result["reliability"], outputs.reliability)
    plot_spread_skill(result["spread_skill"], outputs.spread_skill)
    s = result["summary"]
    first = s.iloc[0]
    text = ("# Ensemble verification\n\n"
            f"{int(first['storms'])} held-out storms x {int(s[s.terrain == 'all']['dems'].iloc[0])} DEMs x "
            f"{int(first['hours'])} hours, {int(first['rain_members'])} rainfall-forecast members per storm; "
            "truth: the solver on the real storm. CRPS and MAE of the ensemble mean in metres; "
            "crps_reliability_m: the part of the CRPS that miscalibration costs, crps_potential_vs_solver: the "
            "CRPS were the ensemble calibrated, over the solver ensemble's (Hersbach 2000); BSS against the "
            "training-storm climatology; reliability gap: largest |observed - forecast| over the probability "
            "bins with >= 1 % of the cases, _p05 / _p95: its 5-95 % range when whole storms are resampled "
            "(what another set of as many storms could have shown; the reliability figure's bars); "
            "spread-skill ratio 1 = calibrated; wall_s: all ensembles, "
            "speed-up: the solver ensemble's wall time / this one's (docs/ensemble.md).\n\n"
            + summary_markdown(s)
            + "\n![reliability](ensemble/figures/reliability.png)\n"
            + "![spread-skill](ensemble/figures/spread_skill.png)\n")
    with atomic_path(outputs.md, suffix=".md") as tmp, open(tmp, "w") as fh:
        fh.write(text)
    return result
