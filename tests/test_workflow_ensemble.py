"""The ensemble target end to end: a tiny dataset, a tiny bridge and U-Net trained through
Snakemake, rainfall members, the solver and model ensembles, and the scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from workflow_utils import TINY_DATASET, jobs_run, snakemake, write_config

from piff.evaluation import ensemble as S

pytestmark = pytest.mark.slow

TRAIN = {"dataset": "tiny", "model": "tiny", "steps": 4, "ckpt_every": 4, "batch_size": 4, "microbatch": 4,
         "log_every": 2, "warmup_steps": 1, "nfe": [1, 2]}
ENSEMBLE = {"dataset": "tiny", "n_storms": 1, "dems": [0, 1], "members": 3, "samples": 2, "nfe": "default",
            "hours": [4, 8], "dressing": 2, "anchored": True,
            "threads": 1, "error_model": {"sigma_log": 0.4, "rho": 0.5, "max_shift_h": 1}}
# the tiny dataset with validation storms (80 mm), which the error dressing is fitted on
DATASET = {**TINY_DATASET, "storms": {**TINY_DATASET["storms"], "totals_mm": [40.0, 80.0, 120.0]},
           "split": {**TINY_DATASET["split"], "val_totals_mm": [80.0]}}


def test_ensemble_target_scores_every_trained_experiment_against_the_solver(tmp_path):
    config = {"datasets": {"tiny": DATASET},
              "experiments": {"bridge": TRAIN, "unet": {**TRAIN, "type": "regression"},
                              "spm": {"dataset": "tiny", "type": "spm"}},
              "ensemble": ENSEMBLE}
    cfg = write_config(tmp_path, config)
    plan = jobs_run(snakemake(tmp_path, "-n", configfile=cfg))
    assert not any(rule.startswith("ensemble") for rule in plan)  # not part of the default target
    jobs = jobs_run(snakemake(tmp_path, "results/ensemble_summary.csv", configfile=cfg))
    assert jobs["ensemble"] == 2 and jobs["ensemble_solver"] == 1 and jobs["ensemble_rain"] == 1
    assert jobs["error_dressing"] == 2 and jobs["ensemble_dressed"] == 2
    assert jobs["ensemble_anchored"] == 2  # each with its own solver control run, alongside the model's runs
    assert "ensemble_solver_control" not in jobs and "ensemble_control" not in jobs
    assert jobs["anchored_dressing"] == 2 and jobs["ensemble_anchored_dressed"] == 2
    # the anchored dressings' validation members run through the solver once for both experiments
    assert jobs["ensemble_validation_rain"] == 1 and jobs["ensemble_validation_solver"] == 1
    assert jobs["ensemble_validation_solver_control"] == 1
    # nfe "default": the bridge's ensemble ran at the NFE its evaluation measured and recorded
    recorded = json.loads((tmp_path / "results" / "bridge" / "metrics.json").read_text())["default_nfe"]["nfe"]
    members = xr.open_dataset(tmp_path / "results" / "ensemble" / "bridge" / "members.nc")
    assert int(members.attrs["nfe"]) == recorded
    members.close()

    summary = pd.read_csv(tmp_path / "results" / "ensemble_summary.csv")
    every = summary[summary.terrain == "all"].set_index("system")
    # trained experiments only, each also dressed with its validation errors and anchored on the
    # solver's control run, plus the reference
    assert set(every.index) == {"solver", "bridge", "unet", "bridge dressed", "unet dressed", "bridge anchored",
                                "unet anchored", "bridge anchored dressed", "unet anchored dressed"}
    assert every.loc["bridge anchored", "members"] == 6 and every.loc["unet anchored", "members"] == 3
    assert every.loc["solver", "members"] == 3 and every.loc["unet", "members"] == 3
    assert every.loc["bridge", "members"] == 6  # 3 rain members x 2 bridge samples
    assert every.loc["bridge dressed", "members"] == 12 and every.loc["unet dressed", "members"] == 6
    assert every.loc["bridge dressed", "wall_s"] > every.loc["bridge", "wall_s"]
    dressing = xr.load_dataset(tmp_path / "results" / "bridge" / "error_dressing.nc")
    assert dressing.attrs["nfe"] == recorded and dressing.attrs["split"] == "val"
    assert dressing["residual_quantile"].attrs["units"] == "m"
    assert every.loc["solver", "crps_vs_solver"] == 1.0
    assert (every["wall_s"] > 0).all() and np.isfinite(every["speedup_vs_solver"]).all()
    for col in ("crps_m", "brier_0.1", "bss_0.1", "brier_0.3", "spread_skill_ratio"):
        assert every[col].notna().all(), col
    # one storm: the storm bootstrap has nothing to resample, its range is the gap itself
    for q in S.BOOTSTRAP_NAMES:
        np.testing.assert_allclose(every[f"reliability_gap_0.1_{q}"], every["reliability_gap_0.1"], equal_nan=True)

    # the table's CRPS is the CRPS of the members file against the dataset's truth
    ds = xr.load_dataset(tmp_path / "data" / "tiny" / "dataset.nc")
    solver = xr.load_dataset(tmp_path / "results" / "ensemble" / "solver" / "members.nc")
    truth = ds["depth"].sel(dem=solver["dem"].values, storm=solver["storm"].values, time=solver["time"].values)
    crps = S.crps(truth.values, np.moveaxis(solver["depth"].values, 2, 0)).mean()
    assert every.loc["solver", "crps_m"] == pytest.approx(crps, rel=1e-4)
    # its Hersbach parts add up to it for every system, and the potential share is reported
    np.testing.assert_allclose(every["crps_reliability_m"] + every["crps_potential_m"], every["crps_m"], rtol=1e-4)
    np.testing.assert_allclose(every["crps_potential_vs_solver"],
                               every["crps_potential_m"] / every.loc["solver", "crps_m"], rtol=1e-4)
    rain = xr.load_dataset(tmp_path / "results" / "ensemble" / "rain_members.nc")
    assert rain.sizes["member"] == 3 and not np.allclose(rain["rainfall_member"][0, 0], rain["rainfall"][0])
    # the control is a forecast, not the real storm
    assert not np.allclose(rain["rainfall_centre"].values[0], rain["rainfall"].values[0])

    reliability = pd.read_csv(tmp_path / "results" / "ensemble" / "reliability.csv")
    assert {f"observed_{q}" for q in S.BOOTSTRAP_NAMES} <= set(reliability.columns)
    for (system, t), g in reliability.groupby(["system", "threshold_m"]):
        assert g["count"].sum() == every.loc[system, "cases"], (system, t)
    # anchored: every member moved by one map (the solver's control run minus the model's) wherever
    # no member is clipped at 0; one thread (ensemble.threads), so the solver's control run went
    # after the model's runs, and the wall time holds both
    ens = tmp_path / "results" / "ensemble"
    bridge = xr.load_dataset(ens / "bridge" / "members.nc")
    anchored = xr.load_dataset(ens / "bridge" / "members_anchored.nc")
    shift = anchored["depth"].values - bridge["depth"].values
    unclipped = (anchored["depth"].values > 0).all(axis=2, keepdims=True)
    spread = np.where(unclipped, shift - shift.mean(axis=2, keepdims=True), 0.0)
    float32 = 1e-6 * max(1.0, float(np.nanmax(anchored["depth"].values)))
    assert unclipped.mean() > 0.1 and np.nanmax(np.abs(spread)) < float32
    assert np.nanmax(np.abs(shift)) > 1e-4  # the anchoring moved the members
    assert anchored.attrs["solver_control_alongside"] == "0 of 2 ensembles"
    parts = anchored.attrs["model_s_total"] + anchored.attrs["solver_control_s_total"]
    assert anchored["wall_time"].values.sum() >= parts
    assert not (ens / "solver" / "control.nc").exists() and not (ens / "bridge" / "control.nc").exists()
    # the anchored members' dressing: their own errors on the validation storms' forecast members,
    # smaller than the raw model's errors there (what is shared by the members has cancelled)
    anchored_fit = xr.load_dataset(ens / "bridge" / "anchored_dressing.nc")
    assert anchored_fit.attrs["split"] == "val" and anchored_fit.attrs["anchored"] == 1
    assert anchored_fit.attrs["nfe"] == recorded and anchored_fit.attrs["rain_members"] == 3
    assert anchored_fit.attrs["mae_m"] < dressing.attrs["mae_m"]
    assert every.loc["bridge anchored dressed", "members"] == 12
    assert (tmp_path / "results" / "ensemble" / "figures" / "reliability.png").stat().st_size > 0
    assert (tmp_path / "results" / "ensemble" / "figures" / "spread_skill.png").stat().st_size > 0
    assert "| solver |" in (tmp_path / "results" / "ensemble_summary.md").read_text()
    crps_map = xr.load_dataset(tmp_path / "results" / "ensemble" / "crps_map.nc")
    assert crps_map["crps"].attrs["units"] == "m" and crps_map.sizes["system"] == 9


def test_ensemble_config_is_checked_before_any_job(tmp_path):
    config = {"datasets": {"tiny": TINY_DATASET}, "experiments": {"spm": {"dataset": "tiny", "type": "spm"}},
              "ensemble": {**ENSEMBLE, "experiments": ["spm"]}}
    out = snakemake(tmp_path, "-n", "results/ensemble_summary.csv", configfile=write_config(tmp_path, config),
                    check=False)
    assert out.returncode != 0
    assert "config: ensemble.experiments: 'spm' is not a trained experiment" in out.stdout + out.stderr


def test_a_dressing_without_validation_storms_is_a_config_error(tmp_path):
    config = {"datasets": {"tiny": TINY_DATASET}, "experiments": {"bridge": TRAIN}, "ensemble": ENSEMBLE}
    out = snakemake(tmp_path, "-n", "results/ensemble_summary.csv", configfile=write_config(tmp_path, config),
                    check=False)
    assert out.returncode != 0
    assert "config: ensemble.dressing: the dressing is fitted on validation storms, and dataset 'tiny' has none" \
        in out.stdout + out.stderr


def test_anchoring_on_the_real_storm_is_a_config_error(tmp_path):
    ensemble = {**ENSEMBLE, "dressing": 0, "error_model": {**ENSEMBLE["error_model"], "centre": "observed"}}
    config = {"datasets": {"tiny": TINY_DATASET}, "experiments": {"bridge": TRAIN}, "ensemble": ensemble}
    out = snakemake(tmp_path, "-n", "results/ensemble_summary.csv", configfile=write_config(tmp_path, config),
                    check=False)
    assert out.returncode != 0
    assert "config: ensemble.anchored needs error_model.centre: forecast" in out.stdout + out.stderr


def test_an_unknown_forecast_centre_is_a_config_error(tmp_path):
    ensemble = {**ENSEMBLE, "error_model": {**ENSEMBLE["error_model"], "centre": "truth"}}
    config = {"datasets": {"tiny": TINY_DATASET}, "experiments": {"bridge": TRAIN}, "ensemble": ensemble}
    out = snakemake(tmp_path, "-n", "results/ensemble_summary.csv", configfile=write_config(tmp_path, config),
                    check=False)
    assert out.returncode != 0
    assert "config: ensemble.error_model.centre = 'truth' is not one of forecast, observed" in out.stdout + out.stderr
