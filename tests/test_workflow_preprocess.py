"""The preprocessing stage through real Snakemake runs in temporary directories."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from workflow_utils import REPO, TINY_DATASET, jobs_run, snakemake, write_config

from piff.data import format as fmt
from piff.data.preprocess import continuity_residual, storm_batches
from piff.data.torch_dataset import FloodMapDataset

pytestmark = pytest.mark.slow


def tiny_config(**datasets):
    datasets = datasets or {"tiny": TINY_DATASET}
    return {"datasets": copy.deepcopy(datasets), "experiments": {"t": {"dataset": next(iter(datasets))}}}


def test_default_config_dry_run_and_lint(tmp_path):
    # the embedded default config, from the repository itself
    snakemake(REPO, "-n", "--quiet")
    proc = snakemake(REPO, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    cfg = write_config(work, tiny_config(tiny=TINY_DATASET, other={**TINY_DATASET, "terrain": {
        **TINY_DATASET["terrain"], "count": 1}}))
    first = snakemake(work, "data/tiny/dataset.nc", "data/other/dataset.nc", configfile=cfg)
    return work, cfg, first


def test_tiny_dataset_layout_units_and_continuity(built):
    work, _, first = built
    assert jobs_run(first)["simulate"] == 2 * 2 + 1 * 2  # DEMs x chunks of 2 storms, per dataset
    ds = fmt.open_dataset(work / "data/tiny/dataset.nc", load=True)
    expected = {"dem": 2, "storm": 4, "time": 9, "y": 24, "x": 24, "x_face": 25, "y_face": 25}
    assert expected.items() <= dict(ds.sizes).items()
    assert ds["depth"].dims == ("dem", "storm", "time", "y", "x")
    assert ds["flux_x"].dims == ("dem", "storm", "time", "y", "x_face")
    units = {v: ds[v].attrs.get("units") for v in ("elevation", "depth", "vx", "vy", "flux_x", "rainfall", "spm")}
    assert units == {"elevation": "m", "depth": "m", "vx": "m s-1", "vy": "m s-1", "flux_x": "m2",
                     "rainfall": "mm h-1", "spm": "m"}
    assert ds.attrs["Conventions"] == "CF-1.10" and ds["x"].attrs["units"] == "m"
    assert "config_hash" in ds.attrs and "piff_version" in ds.attrs
    for v in ("depth", "vx", "vy", "flux_x", "flux_y", "spm", "prior_coarse"):
        assert np.isfinite(ds[v].values).all(), v
    assert float(ds["depth"].max()) > 0.01  # it rained and water is stored somewhere
    # the discrete continuity equation closes on the stored fields (float32 storage)
    assert np.abs(continuity_residual(ds)).max() < 1e-5
    # splits: the held-out total is test, the rest train
    split = dict(zip(ds["storm_total"].values.tolist(), ds["split"].values.astype(str)))
    assert split[120.0] == "test" and split[40.0] == "train"
    # the rainfall stored is the storm table's, interval convention (time 0 is empty)
    assert np.all(ds["rainfall"].values[:, 0] == 0)
    np.testing.assert_allclose(ds["rainfall"].values.sum(1), ds["storm_total"].values, rtol=1e-5)


def test_torch_dataset_reads_the_built_file(built):
    work, _, _ = built
    path = work / "data/tiny/dataset.nc"
    train = FloodMapDataset(path, "train")
    lazy = FloodMapDataset(path, "train", in_memory=False)
    assert len(train) == 2 * 2 * 8  # DEMs x train storms x hours 1..8
    a, b = train[5], lazy[5]
    for k in a:
        assert a[k].shape == b[k].shape and bool((a[k] == b[k]).all()), k
    assert a["rain_window"].shape == (24,) and a["depth"].shape == (1, 24, 24)
    assert a["flux_x"].shape == (1, 24, 25) and a["flux_y"].shape == (1, 25, 24)
    test = FloodMapDataset(path, "test", prior="coarse")
    ds = fmt.open_dataset(path)
    held_out = set(ds["storm"].values[ds["split"].values.astype(str) == "test"].tolist())
    assert {int(test[i]["storm"]) for i in range(len(test))} == held_out
    assert set(train.storm_ids.tolist()).isdisjoint(held_out)


def test_second_run_does_nothing_and_one_change_reruns_one_dataset(built):
    work, cfg_path, _ = built
    again = snakemake(work, "data/tiny/dataset.nc", "data/other/dataset.nc", configfile=cfg_path)
    assert jobs_run(again) == {}
    cfg = tiny_config(tiny=TINY_DATASET, other={**TINY_DATASET, "terrain": {**TINY_DATASET["terrain"], "count": 1}})
    cfg["datasets"]["other"]["solver"] = {"manning": 0.05}
    changed = write_config(work, cfg)
    proc = snakemake(work, "data/tiny/dataset.nc", "data/other/dataset.nc", configfile=changed)
    counts = jobs_run(proc)
    # only 'other' reran: its 2 chunks (solver and coarse prior) and its assembly
    assert counts == {"simulate": 2, "coarse_prior": 2, "assemble": 1}, counts


@pytest.mark.parametrize("mutate, needle", [
    (lambda c: c["datasets"]["tiny"]["storms"].update(totalz_mm=[1]), "totalz_mm"),
    (lambda c: c["experiments"].update({"bad name!": {"dataset": "tiny"}}), "bad name!"),
    (lambda c: c["experiments"]["t"].update(dataset="nope"), "nope"),
    (lambda c: c["experiments"]["t"].update(sampler="rk45"), "rk45"),
])
def test_config_errors_are_rejected_before_any_job(tmp_path, mutate, needle):
    cfg = tiny_config()
    mutate(cfg)
    proc = snakemake(tmp_path, "-n", configfile=write_config(tmp_path, cfg), check=False)
    assert proc.returncode != 0
    assert needle in proc.stdout + proc.stderr
    assert not (tmp_path / "data").exists()


def test_storm_batches_equal_sized_and_padded():
    assert storm_batches(18, 64 * 64) == [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    assert storm_batches(7, 64 * 64) == [[0, 1, 2, 3], [4, 5, 6, 6]]  # padded: one shape, one compile
    assert storm_batches(3, 256 * 256) == [[0], [1], [2]]
    assert storm_batches(2, 24 * 24) == [[0, 1]]
