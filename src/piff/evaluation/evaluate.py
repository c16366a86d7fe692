"""Score predicted depth maps (``results/<name>/samples.nc``) against the solver ground truth.

Every metric is computed **per map** (one DEM x test storm x hour, in metres) with
:func:`piff.hydro.metrics.all_metrics` and then averaged over maps, so a large wet map weighs
as much as a nearly dry one. Per-map NSE is undefined (NaN) for a map whose truth has no
variance (e.g. all dry), and the relative volume error is undefined (inf) when the truth is dry
but the prediction is not; such maps are left out of that metric's mean (``nanmean``) and
counted in ``n_<metric>_dropped``.

Predictions are joined to the truth on coordinate **values** (DEM index, storm id, hour, and a
check that x/y agree), never on positions or sort order: the reference code paired files by
sort order and silently scored the wrong maps.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from piff.atomic import atomic_write_text
from piff.data import format as fmt
from piff.errors import PiffInputError
from piff.evaluation import default_nfe
from piff.hydro import metrics as M
from piff.hydro.continuity import water_balance_residual_m
from piff.units import MM_PER_M

log = logging.getLogger(__name__)

THRESHOLDS_M = (0.05, 0.1, 0.3)
AVERAGING = ("metrics computed per map (DEM x storm x hour) over valid cells, then averaged over maps; "
             "maps where a metric is undefined (NaN NSE of an all-dry truth, inf volume error) are left "
             "out of that mean and counted in n_<metric>_dropped; ensembles are scored by their mean. "
             "*_pooled, mae[band], bias[band], share[band] and the *_wet_fraction scores are computed once "
             "over all cells of all maps together (band = reference depth band, dry = below 5 mm)")
# per-map columns holding additive sums (piff.hydro.metrics.pooled_sums), not scores
SUM_PREFIX = "sum:"
# the per-map scores that can be undefined, whose dropped maps are counted
MAY_BE_UNDEFINED = ("nse", "nse_wet", "volume_error")
UNITS = {"mae": "m", "rmse": "m", "nse": "1", "mae_wet": "m", "rmse_wet": "m", "nse_wet": "1", "md": "m",
         "peak_error": "m", "volume_error": "1 (relative)", "csi@*": "1", "f1@*": "1",
         "continuity_rms_mm_per_h": "mm h-1", "spread_m": "m", "seconds_per_map": "s",
         "solver_seconds_per_event": "s", "speedup": "1 (solver s per event / model s per map)",
         "nse_pooled": "1", "csi_pooled@*": "1", "mae[*]": "m", "bias[*]": "m", "share[*]": "1",
         "false_wet_fraction": "1", "missed_wet_fraction": "1"}


def metric_columns(thresholds=THRESHOLDS_M) -> list[str]:
    """The per-map score columns in output order."""
    cols = ["mae", "rmse", "nse", "mae_wet", "rmse_wet", "nse_wet"]
    cols += [f"{name}@{tau:g}" for name in ("csi", "f1") for tau in thresholds]
    return cols + ["md", "peak_error", "volume_error"]


# ----------------------------------------------------------------------------- alignment
def check_alignment(samples: xr.Dataset, dataset: xr.Dataset) -> None:
    """Every sample coordinate value must exist in the dataset and the grids must agree."""
    for dim in ("dem", "storm", "time"):
        if dim not in dataset.coords:
            raise PiffInputError("dataset", f"has no {dim} coordinate to join the samples on")
        missing = np.setdiff1d(samples[dim].values, dataset[dim].values)
        if missing.size:
            raise PiffInputError("samples", f"{dim} values {missing.tolist()} are not in the dataset")
    if np.any(samples["time"].values < 1):
        raise PiffInputError("samples", "time must be hours >= 1 (hour 0 is the dry initial state)")
    for dim in ("y", "x"):
        if samples.sizes[dim] != dataset.sizes[dim] or not np.allclose(samples[dim].values, dataset[dim].values):
            raise PiffInputError("samples", f"the {dim} coordinate differs from the dataset's grid")
    split = dataset["split"].sel(storm=samples["storm"].values).values.astype(str)
    if np.any(split != "test"):
        log.warning("samples include %d storms that are not in the test split", int(np.sum(split != "test")))


def valid_cells(dataset: xr.Dataset, dem) -> np.ndarray:
    """(y, x) True where DEM ``dem`` has data: nodata cells are walls with no rain, not scored."""
    if "nodata" not in dataset:
        return np.ones((dataset.sizes["y"], dataset.sizes["x"]), bool)
    return dataset["nodata"].sel(dem=dem).values == 0


# ----------------------------------------------------------------------------- per map
def balance_inputs(dataset: xr.Dataset, dem, storm, hours) -> dict | None:
    """The water-balance terms of hours ``hours`` of one event as float64 arrays, named as
    :func:`piff.hydro.continuity.water_balance_residual_m` takes them: fluxes (m^2), rain
    (mm/h), losses (m) and the cell size (m); None when the dataset has no fluxes. float64, so
    the sums add no rounding to the float32 data."""
    if not {"flux_x", "flux_y"} <= set(dataset.variables):
        return None
    at = {"dem": dem, "storm": storm, "time": hours}
    field = lambda name: dataset[name].sel(**at).values.astype(np.float64)  # (hours, ...)
    return {"flux_x": field("flux_x"), "flux_y": field("flux_y"),
            "rain_mm_per_h": dataset["rainfall"].sel(storm=storm, time=hours).values.astype(np.float64),
            "loss": field("loss") if "loss" in dataset else None, "dx": float(dataset.attrs["cell_size_m"])}


def continuity_rms_mm_per_h(pred, truth_prev, inputs: dict, valid) -> np.ndarray:
    """(hours,) RMS over valid cells of the hourly water-balance imbalance [mm per hour] of the
    predicted depth ``pred`` (hours, y, x) at hour h against the TRUE depth ``truth_prev`` at
    h - 1 and the dataset's fluxes, rain and losses (``inputs`` from :func:`balance_inputs`)."""
    imbalance_m = water_balance_residual_m(pred.astype(np.float64), truth_prev.astype(np.float64), **inputs)
    sq = np.where(valid, (imbalance_m * MM_PER_M) ** 2, 0.0).sum(axis=(-2, -1))
    return np.sqrt(sq / max(int(valid.sum()), 1))


def member_spread_m(members: np.ndarray, valid) -> np.ndarray:
    """(hours,) mean over valid cells of the ensemble standard deviation [m] of (M, hours, y, x)."""
    std = members.std(axis=0)
    return np.where(valid, std, 0.0).sum(axis=(-2, -1)) / max(int(valid.sum()), 1)


def per_map_scores(samples: xr.Dataset, dataset: xr.Dataset, thresholds=THRESHOLDS_M) -> pd.DataFrame:
    """One row per (nfe, dem, storm, hour): the terrain (seen or unseen DEM), the storm group and
    every per-map score."""
    check_alignment(samples, dataset)
    terrain = fmt.terrain_of_dems(dataset)
    hours = samples["time"].values.astype(int)
    n_members = samples.sizes["member"]
    cols = metric_columns(thresholds)
    frames = []
    for dem in samples["dem"].values:
        valid = valid_cells(dataset, dem)
        for storm in samples["storm"].values:
            truth = dataset["depth"].sel(dem=dem, storm=storm, time=hours).values
            truth_prev = dataset["depth"].sel(dem=dem, storm=storm, time=hours - 1).values
            group = str(dataset["storm_group"].sel(storm=storm).values)
            balance = balance_inputs(dataset, dem, storm, hours)
            for nfe in samples["nfe"].values:
                members = (samples["depth"].sel(nfe=nfe, dem=dem, storm=storm)
                           .transpose("member", "time", "y", "x").values)
                pred = members.mean(axis=0)
                scores = M.all_metrics(pred, truth, thresholds, valid)
                sums = M.pooled_sums(pred, truth, thresholds, valid)
                frame = pd.DataFrame({"nfe": int(nfe), "dem": int(dem), "storm": int(storm),
                                      "terrain": terrain[int(dem)], "group": group,
                                      "hour": hours, **{c: np.asarray(scores[c], np.float64) for c in cols},
                                      **{SUM_PREFIX + k: np.asarray(v, np.float64) for k, v in sums.items()}})
                if balance is not None:
                    frame["continuity_rms_mm_per_h"] = continuity_rms_mm_per_h(pred, truth_prev, balance, valid)
                if n_members > 1:
                    frame["spread_m"] = member_spread_m(members, valid)
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- aggregate
def terrains_present(per_map: pd.DataFrame) -> list[str]:
    """The terrains with test maps, seen first (:data:`piff.data.format.TERRAINS`)."""
    return [t for t in fmt.TERRAINS if t in set(per_map["terrain"])]


def groups_present(per_map: pd.DataFrame) -> list[str]:
    """"all" then the storm groups with test maps, in the dataset format's order."""
    present = set(per_map["group"])
    known = [g for g in fmt.STORM_GROUPS if g in present]
    return ["all"] + known + sorted(present - set(known))


def mean_over_maps(maps: pd.DataFrame, score_cols: list[str]) -> dict:
    """Mean of each score over maps, leaving out undefined (non-finite) values and counting them."""
    values = maps[score_cols].to_numpy(np.float64)
    finite = np.isfinite(values)
    out = {"n_maps": len(maps)}
    with np.errstate(invalid="ignore"):
        means = np.where(finite, values, 0.0).sum(0) / finite.sum(0)
    out.update({c: float(means[i]) if finite[:, i].any() else np.nan for i, c in enumerate(score_cols)})
    for c in MAY_BE_UNDEFINED:
        out[f"n_{c}_dropped"] = int((~finite[:, score_cols.index(c)]).sum())
    return out


def speed(samples: xr.Dataset, dataset: xr.Dataset) -> tuple[dict, float]:
    """({nfe: model seconds per map}, mean solver wall time per event [s] over the sampled DEMs
    and storms, NaN when the dataset has no solver timings)."""
    per_map = {int(n): float(s) for n, s in zip(samples["nfe"].values, samples["seconds_per_map"].values)}
    if "solver_wall_time" not in dataset:
        return per_map, np.nan
    wall = dataset["solver_wall_time"].sel(dem=samples["dem"].values, storm=samples["storm"].values)
    return per_map, float(wall.mean())


def aggregate(per_map: pd.DataFrame, seconds_per_map: dict, solver_seconds: float,
              thresholds=THRESHOLDS_M) -> pd.DataFrame:
    """One row per (nfe, terrain, group, hour) with hour "all" first, then each hour: means of the
    per-map scores, and the pooled scores of all the maps' cells together (from the summed
    columns). Seen and unseen terrain are never mixed: they answer different questions."""
    keys = ("nfe", "dem", "storm", "terrain", "group", "hour")
    sum_cols = [c for c in per_map.columns if c.startswith(SUM_PREFIX)]
    score_cols = [c for c in per_map.columns if c not in keys and c not in sum_cols]
    rows = []
    for (nfe, terrain), on_terrain in per_map.groupby(["nfe", "terrain"], sort=False):
        for group in groups_present(on_terrain):
            in_group = on_terrain if group == "all" else on_terrain[on_terrain["group"] == group]
            for hour in ["all"] + sorted(in_group["hour"].unique().tolist()):
                maps = in_group if hour == "all" else in_group[in_group["hour"] == hour]
                row = {"nfe": int(nfe), "terrain": terrain, "group": group, "hour": str(hour)}
                row.update(mean_over_maps(maps, score_cols))
                row.update(M.pooled_scores({c[len(SUM_PREFIX):]: maps[c].sum() for c in sum_cols}, thresholds))
                row["seconds_per_map"] = seconds_per_map[int(nfe)]
                row["solver_seconds_per_event"] = solver_seconds
                row["speedup"] = solver_seconds / row["seconds_per_map"] if row["seconds_per_map"] > 0 else np.nan
                rows.append(row)
    order = {t: i for i, t in enumerate(fmt.TERRAINS)}
    table = pd.DataFrame(rows)
    return table.sort_values(["nfe", "terrain"], key=lambda c: c.map(order) if c.name == "terrain" else c,
                             kind="stable").reset_index(drop=True)


def evaluate(samples: xr.Dataset, dataset: xr.Dataset, thresholds=THRESHOLDS_M) -> tuple[pd.DataFrame, dict]:
    """Metrics per NFE, terrain, storm group and hour (wide table) and the hour="all" summary as a dict.

    ``samples``: the layout of ``results/<name>/samples.nc`` (depth in m with dims nfe, member,
    dem, storm, time, y, x; seconds_per_map per nfe). ``dataset``: the piff dataset it predicts.
    Returns (table with columns nfe, terrain, group, hour, n_maps, scores, dropped-map counts,
    speed; dict for metrics.json: metadata plus ``metrics[nfe][terrain][group][metric]`` for hour
    "all", terrain ``seen`` = training DEMs, ``unseen`` = held-out DEMs).
    """
    per_map = per_map_scores(samples, dataset, thresholds)
    seconds, solver_seconds = speed(samples, dataset)
    table = aggregate(per_map, seconds, solver_seconds, thresholds)
    return table, summary_dict(table, samples, per_map, thresholds)


def summary_dict(table: pd.DataFrame, samples: xr.Dataset, per_map: pd.DataFrame, thresholds) -> dict:
    """metrics.json content: metadata and the hour="all" rows nested by nfe, terrain, then group."""
    attrs = samples.attrs
    overall = table[table["hour"] == "all"]
    nested = {}
    for _, row in overall.iterrows():
        values = {k: _json_number(v) for k, v in row.items() if k not in ("nfe", "terrain", "group", "hour")}
        nested.setdefault(str(row["nfe"]), {}).setdefault(row["terrain"], {})[row["group"]] = values
    maps_per_nfe = per_map[per_map["nfe"] == per_map["nfe"].iloc[0]]
    return {
        "experiment": attrs.get("experiment", ""), "kind": attrs.get("kind", ""), "dataset": attrs.get("dataset", ""),
        "dataset_sha256": attrs.get("dataset_sha256", ""), "sampler": attrs.get("sampler", ""),
        "seed": _json_number(attrs.get("seed", "")), "model_fingerprint": attrs.get("model_fingerprint", ""),
        "device": attrs.get("device", ""), "members": int(samples.sizes["member"]),
        "n_maps": len(maps_per_nfe), "n_dems": int(samples.sizes["dem"]), "n_storms": int(samples.sizes["storm"]),
        "maps_per_terrain": {t: int((maps_per_nfe["terrain"] == t).sum()) for t in terrains_present(per_map)},
        "hours": [int(h) for h in samples["time"].values],
        "storms_per_group": {g: int(maps_per_nfe[maps_per_nfe["group"] == g]["storm"].nunique())
                             for g in groups_present(per_map)[1:]},
        "thresholds_m": [float(t) for t in thresholds], "wet_threshold_m": M.WET_M,
        "averaging": AVERAGING, "units": UNITS,
        "metrics": nested,
        "default_nfe": _default_nfe(overall, attrs.get("kind", "")),
    }


def _default_nfe(overall: pd.DataFrame, kind: str) -> dict | None:
    """piff predict's default NFE for a bridge model (``piff.evaluation.default_nfe``); None for
    kinds without a choice (the regression and the priors use one or no network evaluation)."""
    if kind != "piff":
        return None
    rows = overall[overall["group"] == "all"]
    mae = {int(n): {t: float(v) for t, v in zip(r["terrain"], r["mae"])} for n, r in rows.groupby("nfe")}
    return default_nfe.choose(mae)


def _json_number(v):
    """Plain Python numbers for json; NaN/inf become null (strict JSON has neither)."""
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    return v


# ----------------------------------------------------------------------------- files
def open_samples(path) -> xr.Dataset:
    """Read ``samples.nc`` and check it has the predicted depth and the speed per NFE."""
    if not Path(path).exists():
        raise PiffInputError(path, "samples file does not exist")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except Exception as err:  # netCDF4 raises OSError, ValueError, RuntimeError ...
        raise PiffInputError(path, f"not a readable netCDF file ({type(err).__name__}: {err})") from err
    dims = ("nfe", "member", "dem", "storm", "time", "y", "x")
    problem = (f"not a samples file: needs depth with dims {dims}" if "depth" not in ds or ds["depth"].dims != dims
               else "not a samples file: missing seconds_per_map" if "seconds_per_map" not in ds else None)
    if problem:
        ds.close()
        raise PiffInputError(path, problem)
    return ds


def evaluate_files(samples_path, dataset_path, out_csv, out_json, thresholds=THRESHOLDS_M) -> pd.DataFrame:
    """Evaluate ``samples_path`` against ``dataset_path``; write the CSV and JSON atomically.

    Refuses samples made from a different dataset file (their ``dataset_sha256`` attribute),
    since scoring them against another truth would be silently wrong.
    """
    from piff.data.format import file_sha256

    for path, what in ((samples_path, "samples"), (dataset_path, "dataset")):
        if not Path(path).exists():  # every missing input named before any is parsed
            raise PiffInputError(path, f"{what} file does not exist")
    samples = open_samples(samples_path)
    expected = samples.attrs.get("dataset_sha256", "")
    if expected and expected != file_sha256(dataset_path):
        raise PiffInputError(samples_path, f"was predicted from a different dataset than {dataset_path} "
                                           "(dataset_sha256 differs); resample first")
    dataset = fmt.open_dataset(dataset_path)
    try:
        table, summary = evaluate(samples, dataset, thresholds)
    finally:
        samples.close()
        dataset.close()
    atomic_write_text(out_csv, table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out_json, json.dumps(summary, indent=2) + "\n")
    log.info("%s: %d maps per NFE, NFE %s", samples_path, summary["n_maps"], sorted(summary["metrics"], key=int))
    return table


