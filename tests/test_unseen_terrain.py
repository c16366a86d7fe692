"""Held-out terrain: real-terrain windows mixed into a synthetic dataset, the DEM split stored in
the dataset, training on the seen DEMs only, and every score reported per terrain (seen/unseen)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from piff.data import format as fmt
from piff.data.preprocess import SMOKE_DATASET, boundary_string, build_dataset_in, dem_count, dem_splits, make_terrain
from piff.data.torch_dataset import FloodMapDataset
from piff.errors import PiffInputError
from piff.evaluation import evaluate_files, write_summary
from piff.hydro.terrain import _window_origin, jacksboro

# the smoke dataset plus one real-terrain window; DEM 1 (synthetic) and DEM 2 (real) held out
MIXED = copy.deepcopy(SMOKE_DATASET)
MIXED["terrain"].update(real_windows=1, relief_m=3.0)
MIXED["split"]["test_dems"] = [1, 2]


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory):
    return build_dataset_in(tmp_path_factory.mktemp("mixed"), MIXED, name="mixed")


def test_real_windows_follow_the_source_dems_with_their_own_boundaries():
    assert dem_count(MIXED["terrain"]) == 3
    names = [make_terrain(MIXED["terrain"], i).name for i in range(3)]
    assert names == ["synthetic_000", "synthetic_001", "jacksboro_window_000"]
    real = make_terrain(MIXED["terrain"], 2)
    assert real.elevation.min() == pytest.approx(0.0, abs=1e-6)
    assert real.elevation.max() == pytest.approx(3.0, rel=1e-5)  # relief rescaled to relief_m
    # auto boundaries: the synthetic lowland meets the sea; a cropped real DEM drains at every edge
    assert boundary_string(MIXED, 0).startswith("left=sea:0.0")
    assert boundary_string(MIXED, 2) == "left=free,right=free,top=free,bottom=free"


@pytest.mark.parametrize("cells, n", [(64, 2), (64, 5), (256, 6), (256, 20)])
def test_spread_windows_never_overlap(cells, n):
    """Spread windows share no cell, so a held-out real window has no terrain of a training one."""
    window = (cells * 20.0 / 83.0,) * 2  # cells of 20 m in native cells of ~83 m
    corners = [_window_origin((344, 403), window, k, spread=n) for k in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            dy, dx = (abs(a - b) for a, b in zip(corners[i], corners[j]))
            assert dy >= window[0] or dx >= window[1], (corners[i], corners[j])
    with pytest.raises(ValueError, match="without overlap"):
        _window_origin((344, 403), window, 0, spread=1000)
    a, b = jacksboro(size=16, dx=20.0, offset=0, spread=2), jacksboro(size=16, dx=20.0, offset=1, spread=2)
    assert not np.allclose(a.elevation, b.elevation)


@pytest.mark.parametrize("test_dems, problem", [([3], "not DEM indices"), ([0, 1, 2], "every DEM")])
def test_bad_test_dems_are_refused(test_dems, problem):
    cfg = copy.deepcopy(MIXED)
    cfg["split"]["test_dems"] = test_dems
    with pytest.raises(PiffInputError, match=problem):
        dem_splits(cfg)


def test_dem_split_is_stored_and_training_never_sees_held_out_terrain(mixed_dataset):
    with fmt.open_dataset(mixed_dataset, load=True) as ds:
        assert list(ds["dem_split"].values.astype(str)) == ["train", "test", "test"]
        assert list(ds["dem_name"].values.astype(str)) == ["synthetic_000", "synthetic_001", "jacksboro_window_000"]
        assert list(ds["boundary"].values.astype(str))[2] == "left=free,right=free,top=free,bottom=free"
        elevation = ds["elevation"].values
    train = FloodMapDataset(mixed_dataset, "train", with_physics=False)
    assert set(train.index[:, 0]) == {0}
    assert set(FloodMapDataset(mixed_dataset, "val", with_physics=False).index[:, 0]) <= {0}
    assert set(FloodMapDataset(mixed_dataset, "test", with_physics=False).index[:, 0]) == {0, 1, 2}
    # the normalisation is fitted on the training terrain only
    _, z = train.normaliser_arrays()
    np.testing.assert_array_equal(z, elevation[[0]])


def test_scores_are_reported_per_terrain(mixed_dataset, tmp_path):
    """The spm baseline sampled on the test split: seen = DEM 0, unseen = DEMs 1 and 2, never mixed."""
    from piff.inference.sampling import sample_test_set

    samples = sample_test_set(mixed_dataset, kind="spm", experiment="spm")
    assert list(samples["dem"].values) == [0, 1, 2]
    fmt.write_netcdf(samples, tmp_path / "samples.nc")
    table = evaluate_files(tmp_path / "samples.nc", mixed_dataset, tmp_path / "m.csv", tmp_path / "m.json")
    overall = table[(table["group"] == "all") & (table["hour"] == "all")].set_index("terrain")
    n_storms, n_hours = samples.sizes["storm"], samples.sizes["time"]
    assert overall.loc["seen", "n_maps"] == n_storms * n_hours
    assert overall.loc["unseen", "n_maps"] == 2 * n_storms * n_hours
    # the unseen row is the score of the held-out DEMs alone: the same as scoring them by themselves
    fmt.write_netcdf(samples.sel(dem=[1, 2]), tmp_path / "unseen.nc")
    alone = evaluate_files(tmp_path / "unseen.nc", mixed_dataset, tmp_path / "u.csv", tmp_path / "u.json")
    alone = alone[(alone["group"] == "all") & (alone["hour"] == "all")].iloc[0]
    assert overall.loc["unseen", "mae"] == pytest.approx(alone["mae"], rel=1e-9)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["metrics"]["0"]) == {"seen", "unseen"}
    assert metrics["maps_per_terrain"] == {"seen": n_storms * n_hours, "unseen": 2 * n_storms * n_hours}
    summary = write_summary([tmp_path / "m.json"], tmp_path / "summary.csv", tmp_path / "summary.md")
    assert list(summary.drop_duplicates("terrain")["terrain"]) == ["seen", "unseen"]
    md = (tmp_path / "summary.md").read_text()
    assert "## Seen terrain, storm group: all" in md and "## Unseen terrain, storm group: all" in md


# ----------------------------------------------------------------------------- predict vs simulate
# A small real-terrain dataset: 2 synthetic lowlands and 3 jacksboro windows of 32x32 cells, 6-hour
# storms; window 2 (DEM 4) is never trained on. The model is the config's `phy` experiment, network
# included (the demo preset), with a budget that fits the test suite (400 steps).
UNSEEN = {
    "terrain": {"source": "synthetic", "count": 2, "real_windows": 3, "relief_m": 4.0, "size": 32,
                "cell_size_m": 20.0, "seed": 5, "sea_edge": "left"},
    "storms": {"shapes": ["uniform", "scs_type2", "huff_q1", "chicago_r0.5", "double_peak"],
               "totals_mm": [30.0, 80.0, 150.0], "hours": 6, "seed": 5, "cap_mm_per_h": 150.0},
    "boundaries": "auto", "sea_level_m": 0.0,
    "solver": {"manning": 0.03, "alpha": 0.5, "theta": 0.8, "dtype": "float32", "compile": False},
    "simulate": {"storms_per_job": 15}, "coarse_prior": {"enabled": False},
    "split": {"test_shapes": ["double_peak"], "test_totals_mm": [], "val_totals_mm": [], "test_dems": [4]},
}


@pytest.mark.slow
# 400 training steps on one thread: ~7 min on a slow 2-core host (2026-12-05), hence its own limit
@pytest.mark.timeout(1800)
def test_predict_on_an_unseen_real_window_beats_the_spm_prior(tmp_path):
    """``piff predict`` with a trained phy model on a real DEM it never saw, against ``piff simulate``
    on the same events: its depth maps must be closer to the solver's than the SPM prior's."""
    import subprocess
    import sys
    from pathlib import Path

    import xarray as xr
    import yaml

    from piff.cli import main
    from piff.hydro.terrain import write_dem
    from piff.inference.predict import DEFAULT_BOUNDARY, prior_maps

    dataset = build_dataset_in(tmp_path / "data", UNSEEN, name="unseen")
    repo = Path(__file__).resolve().parents[1]
    phy = yaml.safe_load((repo / "config" / "config.yaml").read_text())["experiments"]["phy"]
    hparams = {k: v for k, v in phy.items() if k not in ("dataset", "description", "eval_hours")}
    hparams.update(steps=400, warmup_steps=40, batch_size=16, microbatch=16, ckpt_every=400,
                   log_every=100, seed=0)
    model = tmp_path / "model.pt"
    proc = subprocess.run([sys.executable, "-m", "piff.training", "--hparams", json.dumps(hparams), "--dataset",
                           str(dataset), "--workdir", str(tmp_path / "run"), "--out", str(model), "--threads", "1"],
                          capture_output=True, text=True, timeout=2000)
    assert proc.returncode == 0, proc.stderr[-4000:]

    terrain = make_terrain(UNSEEN["terrain"], 4)
    dem = write_dem(terrain, tmp_path / "unseen_window.tif")
    with fmt.open_dataset(dataset, load=True) as ds:
        assert ds["dem_split"].values[4] == "test"
        rains = {int(s): ds["rainfall"].sel(storm=s).values[1:] for s in fmt.storm_ids_in_split(ds, "test")}
    hours = [2, 4, 6]
    errors = {"model": [], "spm": []}
    for storm, rain in rains.items():
        csv = tmp_path / f"rain_{storm}.csv"
        csv.write_text("hour,mm_per_h\n" + "".join(f"{h},{v}\n" for h, v in enumerate(rain, 1)))
        truth_nc, pred_nc = tmp_path / f"sim_{storm}.nc", tmp_path / f"pred_{storm}.nc"
        assert main(["simulate", "--dem", str(dem), "--rain", str(csv), "--boundary", DEFAULT_BOUNDARY,
                     "--no-compile", "--out", str(truth_nc)]) == 0
        assert main(["predict", "--model", str(model), "--dem", str(dem), "--rain", str(csv), "--hours", "2,4,6",
                     "--nfe", "10", "--no-progress", "--device", "cpu", "--out", str(pred_nc)]) == 0
        with xr.open_dataset(truth_nc) as t, xr.open_dataset(pred_nc) as p:
            truth = t["depth"].sel(time=hours).values
            pred = p["depth_mean"].sel(time=hours).values
        prior = prior_maps(terrain, rain, hours, prior="spm", boundary=DEFAULT_BOUNDARY)
        errors["model"].append(np.abs(pred - truth).mean())
        errors["spm"].append(np.abs(prior - truth).mean())
    mae = {k: float(np.mean(v)) for k, v in errors.items()}
    print(f"unseen real window, {len(rains)} storms x hours {hours}: MAE model {mae['model']:.4f} m, "
          f"SPM prior {mae['spm']:.4f} m")
    assert mae["model"] < mae["spm"]
