"""Model-error dressing of emulator ensembles (issue 15, piff.inference.dressing): the fit recovers
known conditional errors and calibrates a too-narrow forecast, the file round trip and its
refusals, the fit of a real trained model on validation storms, the dressed members file of the
ensemble verification, and ``piff predict --dressing``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from piff.cli import main
from piff.data.preprocess import SMOKE_DATASET, build_dataset_in, storm_splits
from piff.errors import PiffInputError
from piff.evaluation import ensemble as S
from piff.hydro.terrain import synthetic_lowland, write_dem
from piff.inference import dressing as D


def synthetic_errors(n: int, seed: int):
    """Predicted depths (a third dry) and truths whose error grows with depth and is skewed wet:
    truth = max(0, d + (0.003 + 0.25 d) * z), z a centred gamma(2) draw."""
    rng = np.random.default_rng(seed)
    d = np.where(rng.random(n) < 0.33, 0.0, rng.gamma(0.8, 0.12, n))
    z = rng.gamma(2.0, 1.0, n) - 2.0
    return d, np.maximum(d + (0.003 + 0.25 * d) * z, 0.0)


def test_the_fit_recovers_conditional_errors_and_calibrates_a_deterministic_forecast():
    d, truth = synthetic_errors(400_000, seed=0)
    dressing = D.fit(d, truth)
    assert dressing.cells.sum() == d.size and dressing.attrs["cells_fitted"] == d.size
    # in the bin around 0.3 m the median residual is the skewed error's: (0.003 + 0.25 x 0.3) x (median - 2)
    b = int(np.searchsorted(D.DEPTH_EDGES_M, 0.3, side="right") - 1)
    med = np.median(np.random.default_rng(1).gamma(2.0, 1.0, 200_000) - 2.0)
    assert dressing.residual(np.array([dressing.node_m[b]]), 0.5)[0] == pytest.approx(
        (0.003 + 0.25 * dressing.node_m[b]) * med, abs=0.006)

    # on fresh cases the raw forecast is one member, too sure; the dressed one is calibrated
    d, truth = synthetic_errors(100_000, seed=2)
    ens = dressing.apply(d, 20)
    assert ens.shape == (20,) + d.shape
    raw_crps, dressed_crps = S.crps(truth, d[None]).mean(), S.crps(truth, ens).mean()
    assert dressed_crps < 0.8 * raw_crps
    # dressed member k stands for quantile level (k + 1/2) / 20: as often below the truth as that says
    # (on cells predicted wet, a condition on the forecast, not the outcome: there truth is rarely 0)
    wet = d > 0.05
    below = (truth[wet][None] < ens[:, wet]).mean(axis=1)
    np.testing.assert_allclose(below, (np.arange(20) + 0.5) / 20, atol=0.035)
    for t in (0.1, 0.3):
        table = S.reliability((ens > t).mean(axis=0), truth > t)
        assert S.reliability_gap(table) < 0.05, t


def test_dressed_maps_keep_nodata_stay_dry_above_zero_and_rise_with_the_level():
    d, truth = synthetic_errors(50_000, seed=3)
    dressing = D.fit(d, truth)
    maps = np.array([[[0.0, 0.05], [np.nan, 0.4]]], np.float32)  # (1, 2, 2)
    out = dressing.apply(maps, 5)
    assert out.shape == (5, 1, 2, 2)
    assert np.isnan(out[:, 0, 1, 0]).all() and (out[np.isfinite(out)] >= 0).all()
    assert (np.diff(out[:, 0, 1, 1]) >= 0).all() and out[-1, 0, 1, 1] > out[0, 0, 1, 1]
    np.testing.assert_allclose(dressing.apply(maps, 1)[0, 0, 1, 1], 0.4 + dressing.residual(np.array([0.4]), 0.5)[0],
                               rtol=1e-6)
    with pytest.raises(ValueError):
        dressing.apply(maps, 0)
    with pytest.raises(ValueError, match="too few"):
        D.fit(d[:100], truth[:100])


def test_a_dressing_file_round_trips_and_bad_files_are_refused(tmp_path):
    d, truth = synthetic_errors(20_000, seed=4)
    dressing = D.fit(d, truth, attrs={"model_fingerprint": "abc", "nfe": 2})
    path = dressing.write(tmp_path / D.DRESSING_FILE)
    back = D.read(path, fingerprint="abc")
    np.testing.assert_allclose(back.residual(d, 0.9), dressing.residual(d, 0.9), atol=1e-6)
    assert back.attrs["nfe"] == 2
    with pytest.raises(PiffInputError, match="fitted for another model") as err:
        D.read(path, fingerprint="xyz")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    other = tmp_path / "other.nc"
    xr.Dataset({"depth": ("x", [1.0])}).to_netcdf(other)
    with pytest.raises(PiffInputError, match="not a piff dressing file"):
        D.read(other)
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not netcdf")
    with pytest.raises(PiffInputError, match="not a readable dressing file"):
        D.read(junk)


@pytest.fixture(scope="module")
def val_dataset(tmp_path_factory):
    """The tiny dataset's grid with validation storms: the 150-mm storms of the two kept shapes."""
    cfg = {**SMOKE_DATASET, "split": {"test_shapes": ["huff_q1"], "test_totals_mm": [], "val_totals_mm": [150.0]}}
    return build_dataset_in(tmp_path_factory.mktemp("val_dataset"), cfg)


def test_the_config_time_split_is_the_stored_one(val_dataset):
    """common.smk refuses a dressing without validation storms from storm_splits, before any job:
    it must label the storm grid as the dataset build stored it."""
    cfg = {**SMOKE_DATASET, "split": {"test_shapes": ["huff_q1"], "test_totals_mm": [], "val_totals_mm": [150.0]}}
    stored = xr.load_dataset(val_dataset)["split"].values.astype(str)
    assert sorted(storm_splits(cfg)) == sorted(stored) and "val" in stored
    # a validation shape whose every storm is held out for testing leaves no validation storm
    assert "val" not in storm_splits({**SMOKE_DATASET, "split": {"test_totals_mm": [60.0],
                                                                 "val_shapes": ["huff_q1"],
                                                                 "test_shapes": ["huff_q1"]}})


def test_a_trained_model_is_fitted_on_its_validation_storms(model_path, val_dataset, tiny_dataset):
    dressing = D.fit_on_validation(model_path, val_dataset, kind="piff", nfe=2)
    ds = xr.load_dataset(val_dataset)
    val = (ds["split"].values.astype(str) == "val").sum()
    assert val == 2 and dressing.attrs["split"] == "val" and dressing.attrs["nfe"] == 2
    assert dressing.attrs["maps"] == 2 * val * 6  # DEMs x storms x hours
    assert dressing.attrs["cells_fitted"] == dressing.attrs["maps"] * 16 * 16
    assert dressing.attrs["model_fingerprint"] and dressing.attrs["sampler"] == "euler"
    with pytest.raises(PiffInputError, match="no validation storms"):
        D.fit_on_validation(model_path, tiny_dataset, kind="piff", nfe=2)


def test_the_anchored_dressings_rain_is_the_validation_storms_on_the_training_dems(val_dataset, tiny_dataset):
    from piff.data import format as fmt
    from piff.evaluation import ensemble_runs as R

    cfg = {"members": 3, "seed": 0, "error_model": {"sigma_log": 0.3, "rho": 0.6, "max_shift_h": 1}}
    rain = R.rain_members_dataset(val_dataset, cfg, validation=True)
    with fmt.open_dataset(val_dataset) as ds:
        assert rain["storm"].values.tolist() == [int(s) for s in fmt.storm_ids_in_split(ds, "val")]
        assert rain["dem"].values.tolist() == [int(d) for d in fmt.dems_in_split(ds, "val")]
    assert rain.attrs["split"] == "val" and rain.sizes["member"] == 3
    held_out = R.rain_members_dataset(val_dataset, {**cfg, "n_storms": 2})
    assert held_out.attrs["split"] == "test" and not set(held_out["storm"].values) & set(rain["storm"].values)
    with pytest.raises(PiffInputError, match="no validation storms"):
        R.rain_members_dataset(tiny_dataset, cfg, validation=True)


def test_the_anchored_dressing_refuses_solver_runs_of_other_hours(val_dataset, tmp_path):
    from piff import cf
    from piff.evaluation import ensemble_runs as R

    cfg = {"members": 2, "seed": 0, "error_model": {"sigma_log": 0.3, "rho": 0.6, "max_shift_h": 1}}
    rain = cf.write_netcdf(R.rain_members_dataset(val_dataset, cfg, validation=True), tmp_path / "rain.nc")
    solver = cf.write_netcdf(R.solver_members(val_dataset, rain, [2]), tmp_path / "solver.nc")
    # refused before any model runs (the model path does not even exist)
    with pytest.raises(PiffInputError, match="solver.nc: covers other DEMs, storms, hours or members"):
        R.fit_anchored_dressing(tmp_path / "no-model.pt", val_dataset, rain, solver, solver,
                                {**cfg, "hours": [2, 4], "samples": 1, "sampler": "euler", "nfe": 1})


def test_dressed_members_are_member_major_and_timed(tmp_path):
    from piff import cf
    from piff.evaluation import ensemble_runs as R

    rng = np.random.default_rng(5)
    depth = rng.gamma(0.8, 0.1, (1, 2, 3, 2, 4, 4)).astype(np.float32)  # dem, storm, member, time, y, x
    members = xr.Dataset(
        {"depth": (("dem", "storm", "member", "time", "y", "x"), depth),
         "wall_time": (("dem", "storm"), np.array([[1.0, 2.0]], np.float32))},
        coords={"dem": [0], "storm": [7, 9], "member": np.arange(3), "time": [6, 12], "y": np.arange(4.0),
                "x": np.arange(4.0)},
        attrs={"system": "phy", "kind": "piff", "rain_members": 3, "model_fingerprint": "abc", "nfe": 1})
    mpath = cf.write_netcdf(members, tmp_path / "members.nc")
    d, truth = synthetic_errors(20_000, seed=6)
    dpath = D.fit(d, truth, attrs={"model_fingerprint": "abc", "nfe": 1}).write(tmp_path / "dressing.nc")
    out = R.dressed_members(mpath, dpath, 4)
    assert out.attrs["system"] == "phy dressed" and out.sizes["member"] == 12 and out.attrs["rain_members"] == 3
    expect = D.read(dpath).apply(depth[0, 1], 4)  # (k, member, time, y, x)
    np.testing.assert_allclose(out["depth"].values[0, 1, 2 * 4 + 3], expect[3, 2], rtol=1e-6)
    assert (out["wall_time"].values > members["wall_time"].values).all()
    D.fit(d, truth, attrs={"model_fingerprint": "abc", "nfe": 2}).write(tmp_path / "nfe2.nc")
    with pytest.raises(PiffInputError, match="fitted at NFE 2"):
        R.dressed_members(mpath, tmp_path / "nfe2.nc", 4)


def test_piff_predict_dresses_the_forecast_with_the_file_beside_the_model(model_path, val_dataset, tmp_path,
                                                                           capsys):
    dem = write_dem(synthetic_lowland(16, 20.0, seed=3), tmp_path / "dem.nc")
    rain = tmp_path / "rain.csv"
    rain.write_text("hour,mm_per_h\n1,5\n2,20\n3,40\n4,10\n5,0\n6,0\n")
    args = ["predict", "--no-progress", "--device", "cpu", "--model", str(model_path), "--dem", str(dem),
            "--rain", str(rain), "--nfe", "2", "--dressing", "4"]
    assert main(args + ["--out", str(tmp_path / "none.nc")]) == 2  # no dressing file beside the model yet
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(D.beside(model_path)) in err
    D.fit_on_validation(model_path, val_dataset, kind="piff", nfe=2).write(D.beside(model_path))
    try:
        out = tmp_path / "dressed.nc"
        assert main(args + ["--out", str(out)]) == 0
        ds = xr.load_dataset(out)
        assert ds.attrs["forecast_members"] == 4 and ds.attrs["dressing_maps_per_member"] == 4
        p = ds["p_exceed"].values
        assert ((p >= 0) & (p <= 1)).all() and np.isin(np.round(p[np.isfinite(p)] * 4, 6), np.arange(5)).all()
        q = ds["depth_quantile"].values
        assert np.nanmax(q[:, 2] - q[:, 0]) > 0  # the dressing spreads a single deterministic forecast
        assert "twice" not in capsys.readouterr().out
        twice = args + ["--sampler", "euler_maruyama", "--members", "2", "--out", str(tmp_path / "twice.nc")]
        assert main(twice) == 0
        assert "counts the model's error twice" in capsys.readouterr().out
    finally:
        D.beside(model_path).unlink()
