"""Evaluation against the solver: metric aggregation, value joins, summary, figures, report."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from workflow_utils import TINY_DATASET, snakemake, write_config

from piff.cli import main as piff_main
from piff.data import format as fmt
from piff.data.format import file_sha256
from piff.errors import PiffInputError
from piff.evaluation import evaluate, evaluate_files, write_summary
from piff.evaluation.figures import make_figures, pick_cases

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def truth(tiny_dataset):
    # loaded and closed: a second handle on the same file, closed after reads, makes the next
    # open of that file fail with "NetCDF: HDF error" (netCDF-C 4.10 / HDF5 2.2)
    with fmt.open_dataset(tiny_dataset) as ds:
        return ds.load()


def make_samples(dataset: xr.Dataset, predict=lambda y: y, nfe=(1,), members=1, seconds=0.01,
                 dataset_path="") -> xr.Dataset:
    """A samples.nc-layout dataset for the test storms, hours 1..T, from ``predict(truth)``.
    ``predict`` maps the true depth (dem, storm, time, y, x) to a prediction, or to a
    (members, ...) ensemble when ``members > 1``."""
    storms = fmt.storm_ids_in_split(dataset, "test")
    hours = dataset["time"].values[1:]
    y = dataset["depth"].sel(storm=storms, time=hours).values
    pred = np.asarray(predict(y), np.float32)
    pred = pred if members > 1 else pred[None]
    depth = np.broadcast_to(pred[None], (len(nfe),) + pred.shape)
    coords = {"nfe": np.array(nfe, np.int32), "member": np.arange(members, dtype=np.int32),
              "dem": dataset["dem"].values, "storm": storms, "time": hours, "y": dataset["y"], "x": dataset["x"]}
    return xr.Dataset(
        {"depth": (("nfe", "member", "dem", "storm", "time", "y", "x"), depth.copy(), {"units": "m"}),
         "seconds_per_map": (("nfe",), np.full(len(nfe), seconds, np.float32))},
        coords=coords,
        attrs={"experiment": "hand", "kind": "piff", "dataset": str(dataset_path), "sampler": "euler", "seed": 0,
               "model_fingerprint": "", "device": "cpu",
               "dataset_sha256": file_sha256(dataset_path) if dataset_path else ""})


def overall(table: pd.DataFrame, nfe=None) -> pd.Series:
    rows = table[(table["group"] == "all") & (table["hour"] == "all")]
    return rows.iloc[0] if nfe is None else rows[rows["nfe"] == nfe].iloc[0]


def test_perfect_prediction_scores_perfectly(truth):
    table, summary = evaluate(make_samples(truth), truth)
    hours = truth["time"].values[1:]
    n_test = len(fmt.storm_ids_in_split(truth, "test"))
    # one row per (nfe, group, hour): groups "all" + the test storms' groups, hours "all" + 1..T
    groups = ["all"] + sorted(set(
        truth["storm_group"].sel(storm=fmt.storm_ids_in_split(truth, "test")).values.astype(str)))
    assert sorted(table["group"].unique()) == sorted(groups)
    assert list(table[table["group"] == "all"]["hour"]) == ["all"] + [str(h) for h in hours]
    row = overall(table)
    assert row["n_maps"] == truth.sizes["dem"] * n_test * len(hours) == summary["n_maps"]
    assert row["mae"] == 0 and row["rmse"] == 0 and row["md"] == 0 and row["volume_error"] == 0
    assert row["nse"] == pytest.approx(1.0) and row["nse_wet"] == pytest.approx(1.0)
    for tau in ("0.05", "0.1", "0.3"):
        assert row[f"csi@{tau}"] == 1.0 and row[f"f1@{tau}"] == 1.0
    # the true depths close the water balance: only float32 storage rounding is left (mm/h)
    assert row["continuity_rms_mm_per_h"] < 1e-2
    assert "spread_m" not in table  # single member: no spread column
    # speed: the dataset's mean solver time per event over the test storms, per 0.01 s map
    solver = float(truth["solver_wall_time"].sel(storm=fmt.storm_ids_in_split(truth, "test")).mean())
    assert row["solver_seconds_per_event"] == pytest.approx(solver)
    assert row["speedup"] == pytest.approx(solver / 0.01, rel=1e-5)
    assert summary["metrics"]["1"]["seen"]["all"]["mae"] == 0 and summary["kind"] == "piff"


def test_all_dry_prediction(truth):
    table, _ = evaluate(make_samples(truth, np.zeros_like), truth)
    row = overall(table)
    y = truth["depth"].sel(storm=fmt.storm_ids_in_split(truth, "test"), time=truth["time"].values[1:]).values
    assert (y.max(axis=(-2, -1)) >= 0.05).all()  # every true map has wet cells, so no CSI is "both dry"
    assert row["csi@0.05"] == 0 and row["f1@0.05"] == 0
    assert row["volume_error"] == pytest.approx(-1.0)
    assert row["mae"] == pytest.approx(y.mean(axis=(-2, -1)).mean(), rel=1e-6)  # per-map means, averaged
    assert row["peak_error"] == pytest.approx(-y.max(axis=(-2, -1)).mean(), rel=1e-6)


def test_constant_shift_gives_that_mae(truth):
    shift = 0.1
    table, _ = evaluate(make_samples(truth, lambda y: y + shift), truth)
    hourly = table[table["hour"] != "all"]
    for col in ("mae", "rmse", "md", "peak_error"):
        np.testing.assert_allclose(hourly[col], shift, atol=1e-6, err_msg=col)
    # 0.1 m of extra water per cell is 100 mm in the hour's balance (truth at h-1 is exact)
    assert overall(table)["continuity_rms_mm_per_h"] == pytest.approx(100.0, abs=0.01)


def test_join_is_on_coordinate_values_not_positions(truth):
    samples = make_samples(truth, lambda y: y + np.random.default_rng(0).normal(0, 0.05, y.shape), nfe=(1, 4))
    table, _ = evaluate(samples, truth)
    shuffled = samples.isel(storm=slice(None, None, -1), time=slice(None, None, -1), nfe=[1, 0])
    again, _ = evaluate(shuffled, truth)
    key = ["nfe", "group", "hour"]
    pd.testing.assert_frame_equal(table.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True))
    # the same data with its storm labels swapped is scored against the other storms' truth
    relabelled = samples.assign_coords(storm=samples["storm"].values[::-1])
    assert overall(evaluate(relabelled, truth)[0])["mae"] > overall(table)["mae"]


def test_unknown_storm_is_an_error(truth):
    samples = make_samples(truth)
    bad = samples.assign_coords(storm=samples["storm"].values + 1000)
    with pytest.raises(PiffInputError, match="storm values"):
        evaluate(bad, truth)


def test_ensemble_mean_is_scored_and_spread_reported(truth):
    d = 0.02
    table, summary = evaluate(make_samples(truth, lambda y: np.stack([y - d, y + d]), members=2), truth)
    row = overall(table)
    assert row["mae"] == pytest.approx(0.0, abs=1e-6)  # the members' mean is the truth
    assert row["spread_m"] == pytest.approx(d, rel=1e-4)
    assert summary["members"] == 2


def test_files_cli_and_dataset_check(tiny_dataset, truth, tmp_path):
    samples_path = tmp_path / "samples.nc"
    fmt.write_netcdf(make_samples(truth, lambda y: y + 0.05, nfe=(1, 2), dataset_path=tiny_dataset), samples_path)
    csv, js = tmp_path / "m.csv", tmp_path / "m.json"
    assert piff_main(["evaluate", "--samples", str(samples_path), "--dataset", str(tiny_dataset),
                      "--out-csv", str(csv), "--out-json", str(js)]) == 0
    table = pd.read_csv(csv, dtype={"hour": str})
    assert set(table["nfe"]) == {1, 2} and {"nfe", "group", "hour", "mae", "csi@0.1", "speedup"} <= set(table)
    data = json.loads(js.read_text())
    assert set(data["metrics"]) == {"1", "2"}
    assert data["metrics"]["2"]["seen"]["all"]["mae"] == pytest.approx(0.05, abs=1e-6)
    assert {"experiment", "kind", "dataset", "n_maps", "averaging"} <= set(data)
    # samples predicted from another dataset file are refused, and nothing is written
    other = make_samples(truth, dataset_path=tiny_dataset)
    other.attrs["dataset_sha256"] = "0" * 64
    fmt.write_netcdf(other, samples_path)
    assert piff_main(["evaluate", "--samples", str(samples_path), "--dataset", str(tiny_dataset),
                      "--out-csv", str(tmp_path / "x.csv"), "--out-json", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.csv").exists()


def test_summary_compares_experiments(tiny_dataset, truth, tmp_path):
    paths = []
    for name, kind, shift, nfe in (("worse", "spm", 0.2, (0,)), ("better", "piff", 0.05, (1, 5))):
        samples = make_samples(truth, lambda y, s=shift: y + s, nfe=nfe, dataset_path=tiny_dataset)
        samples.attrs.update(experiment=name, kind=kind)
        fmt.write_netcdf(samples, tmp_path / f"{name}.nc")
        paths.append(tmp_path / f"{name}.json")
        evaluate_files(tmp_path / f"{name}.nc", tiny_dataset, tmp_path / f"{name}.csv", paths[-1])
    table = write_summary(paths, tmp_path / "summary.csv", tmp_path / "summary.md")
    alls = table[table["group"] == "all"]
    assert list(zip(alls["experiment"], alls["nfe"])) == [("better", 1), ("better", 5), ("worse", 0)]
    assert alls["MAE (m)"].tolist() == pytest.approx([0.05, 0.05, 0.2], abs=1e-6)
    assert table["group"].iloc[0] == "all" and len(table) == 3 * 2  # each row also per storm group (design)
    md = (tmp_path / "summary.md").read_text()
    assert "## Seen terrain, storm group: all" in md and "| worse | spm | 0 |" in md and "CSI@0.3" in md
    assert pd.read_csv(tmp_path / "summary.csv").shape[0] == len(table)


def test_figures_are_written(tiny_dataset, truth, tmp_path):
    samples_path = tmp_path / "samples.nc"
    samples = make_samples(truth, lambda y: y * 0.9, nfe=(1, 2, 5), dataset_path=tiny_dataset)
    fmt.write_netcdf(samples, samples_path)
    evaluate_files(samples_path, tiny_dataset, tmp_path / "m.csv", tmp_path / "m.json")
    out = [tmp_path / "fig" / f"{n}.png" for n in ("cases", "error_vs_nfe", "error_vs_hour")]
    make_figures(samples_path, tiny_dataset, tmp_path / "m.csv", *out)
    for path in out:
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000, path
    # the cases shown are test storms at the latest hour, chosen the same way every time
    cases = pick_cases(samples, truth)
    assert cases == pick_cases(samples.isel(storm=slice(None, None, -1)), truth)
    assert {c["hour"] for c in cases} == {int(truth["time"].max())}


@pytest.mark.slow
def test_report_builds(tmp_path):
    """The whole pipeline on a tiny dataset with the two untrained baselines, then --report."""
    baseline = {"dataset": "tiny", "eval_hours": [2, 4, 8]}
    config = {"datasets": {"tiny": copy.deepcopy(TINY_DATASET)},
              "experiments": {"spm": {**baseline, "type": "spm"}, "coarse": {**baseline, "type": "coarse_prior"}}}
    cfg = write_config(tmp_path, config)
    snakemake(tmp_path, configfile=cfg)
    summary = pd.read_csv(tmp_path / "results/summary.csv")
    assert set(summary["experiment"]) == {"spm", "coarse"} and set(summary["nfe"]) == {0}
    assert (tmp_path / "results/spm/figures/cases.png").stat().st_size > 5000
    snakemake(tmp_path, "--report", "report.html", configfile=cfg)
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert len(html) > 10000 and "summary.csv" in html and "cases.png" in html
