"""Tests of piff.hydro.spm (fill-and-spill SPM table, bin lookup, coarse dynamic prior) and of
the ``piff spm`` command. Grids are small; the 256x256 timing check stays well under a second."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import xarray as xr

from piff.cli import main
from piff.hydro.boundary import outlet_mask
from piff.hydro.spm import SPM_BINS_MM, FillAndSpill, coarse_dynamic_prior, downscale_depth, spm_bin, spm_bin_index
from piff.hydro.terrain import synthetic_lowland, write_dem


@pytest.fixture(scope="module")
def lowland():
    ter = synthetic_lowland(64, dx=20.0, seed=5)
    return ter, FillAndSpill(ter.elevation, ter.dx, outlet_mask(ter.shape, "left=sea:0"))


def test_volume_is_conserved(lowland):
    ter, fs = lowland
    rain = np.array([1.0, 5.0, 37.0, 120.0, 300.0, 720.0])
    b = fs.budget(rain)
    np.testing.assert_allclose(b["rain_m3"], ter.elevation.size * ter.dx ** 2 * rain / 1000.0)
    np.testing.assert_allclose(b["stored_m3"] + b["outflow_m3"], b["rain_m3"], rtol=1e-6)
    table = fs.table(rain)  # float32 maps hold the same volume
    np.testing.assert_allclose(table.sum(axis=(1, 2), dtype=np.float64) * ter.dx ** 2, b["stored_m3"], rtol=1e-6)
    assert fs.n_depressions > 3 and (b["outflow_m3"] > 0).all()


def test_hand_made_cascade_of_two_pits():
    # 1 x 7 cells of 1 m: outlet | 2 | pit B 1 (spill 2) | 3 | pit A 0.5 (spill 3) | 3.5 | 4
    z = np.array([[0.0, 2.0, 1.0, 3.0, 0.5, 3.5, 4.0]], np.float32)
    out = np.zeros(z.shape, bool)
    out[0, 0] = True
    fs = FillAndSpill(z, 1.0, out)
    assert fs.n_depressions == 2
    # 0.2 m of rain: A holds its 3 cells' rain (0.6 m3), B its 2 cells' (0.4 m3), 0.4 m3 leaves
    np.testing.assert_allclose(fs.depth(200.0)[0], [0, 0, 0.4, 0, 0.6, 0, 0], atol=1e-6)
    assert fs.budget(200.0)["outflow_m3"][0] == pytest.approx(0.4)
    # 1 m: A fills to its spill level 3 and spills 0.5 m3 into B, which fills to 2 and spills
    np.testing.assert_allclose(fs.depth(1000.0)[0], [0, 0, 1.0, 0, 2.5, 0, 0], atol=1e-6)
    assert fs.budget(1000.0)["outflow_m3"][0] == pytest.approx(3.5)


def test_closed_basin_keeps_all_water():
    ter = synthetic_lowland(48, dx=20.0, seed=2)
    fs = FillAndSpill(ter.elevation, ter.dx, np.zeros(ter.shape, bool))
    rain = np.array([5.0, 50.0, 300.0, 720.0])
    b = fs.budget(rain)
    assert (b["outflow_m3"] == 0).all()
    np.testing.assert_allclose(b["stored_m3"], b["rain_m3"], rtol=1e-9)


def test_closed_basin_lake_tops_up_and_merges_depressions():
    # closed 1 x 6 cells: region minimum 0 (terminal lake) | 5 | depression B {1, 3} spilling at 5 | 6
    z = np.array([[5.0, 0.0, 5.0, 1.0, 3.0, 6.0]], np.float32)
    fs = FillAndSpill(z, 1.0, np.zeros(z.shape, bool))
    np.testing.assert_allclose(fs.depth(1000.0)[0], [0, 3, 0, 2.5, 0.5, 0], atol=1e-6)
    # 1.8 m: the lake reaches 5 m and pours 0.4 m3 into B (5.4 -> 5.8 m3, level 4.9)
    np.testing.assert_allclose(fs.depth(1800.0)[0], [0, 5, 0, 3.9, 1.9, 0], atol=1e-5)
    # 3 m: B is full and merged; one flat level over everything: 18 m3 over 6 cells -> 6.333 m
    np.testing.assert_allclose(fs.depth(3000.0)[0] + z[0], 6 + 1 / 3, atol=1e-5)


def test_water_level_is_flat_within_each_depression(lowland):
    ter, fs = lowland
    depth = fs.depth(80.0)
    level = ter.elevation + depth
    for lab in range(1, fs.n_depressions + 1):
        wet = (fs.labels == lab) & (depth > 0)
        if wet.sum() > 1:
            assert np.ptp(level[wet]) < 1e-4
    assert (depth[fs.labels == 0] == 0).all()  # no water outside depressions (open domain)


def test_outlets_drain_a_plane():
    ny, nx = 8, 12
    z = np.tile(np.arange(nx, dtype=np.float32) * 0.1, (ny, 1))  # falls towards the left edge
    fs = FillAndSpill(z, 10.0, outlet_mask(z.shape, "left=sea:0"))
    assert fs.n_depressions == 0
    assert fs.depth(300.0).max() == 0
    # the same plane with walls everywhere fills from the left
    closed = FillAndSpill(z, 10.0, np.zeros(z.shape, bool))
    d = closed.depth(300.0)
    assert d[:, 0].min() > d[:, -1].max() and closed.budget(300.0)["outflow_m3"][0] == 0


def test_depth_is_monotone_in_rain(lowland):
    _, fs = lowland
    table = fs.table()
    assert table.shape == (144, 64, 64) and table.dtype == np.float32
    assert (np.diff(table, axis=0) >= -1e-6).all()
    np.testing.assert_allclose(table[59], fs.depth(300.0), atol=1e-6)  # bin 300 mm is index 59


def test_nodata_cells_stay_dry_and_get_no_rain():
    ter = synthetic_lowland(32, seed=1)
    nodata = np.zeros(ter.shape, bool)
    nodata[:, -6:] = True
    z = ter.elevation.copy()
    z[nodata] = np.nan
    fs = FillAndSpill(z, ter.dx, outlet_mask(ter.shape, "left=sea:0"), nodata_mask=nodata)
    d = fs.depth(500.0)
    assert (d[nodata] == 0).all()
    b = fs.budget(500.0)
    assert b["rain_m3"][0] == pytest.approx((~nodata).sum() * ter.dx ** 2 * 0.5)
    assert b["stored_m3"][0] + b["outflow_m3"][0] == pytest.approx(b["rain_m3"][0], rel=1e-9)


def test_table_is_fast_at_256():
    ter = synthetic_lowland(256, seed=0)
    FillAndSpill(ter.elevation[:8, :8], ter.dx, outlet_mask((8, 8), "left=sea:0"))  # numba warm-up
    t0 = time.perf_counter()
    fs = FillAndSpill(ter.elevation, ter.dx, outlet_mask(ter.shape, "left=sea:0"))
    fs.table()
    assert time.perf_counter() - t0 < 3.0  # ~0.1 s alone; generous for a shared machine


# ------------------------------------------------------------------------------ lookup


def test_spm_bins_and_lookup():
    assert SPM_BINS_MM.size == 144 and SPM_BINS_MM[0] == 5 and SPM_BINS_MM[-1] == 720
    x = np.array([0.0, 0.3, 5.0, 5.01, 10.00001, 299.9, 719.0, 5000.0])
    np.testing.assert_array_equal(spm_bin(x), [5, 5, 5, 10, 10, 300, 720, 720])
    np.testing.assert_array_equal(spm_bin_index(x), [0, 0, 0, 1, 1, 59, 143, 143])
    assert spm_bin(12.0) == 15.0 and spm_bin_index(12.0) == 2
    t = torch.tensor([0.0, 12.0, 721.0])
    assert torch.equal(spm_bin(t), torch.tensor([5.0, 15.0, 720.0]))
    idx = spm_bin_index(t)
    assert idx.dtype == torch.int64 and idx.tolist() == [0, 2, 143]


# ------------------------------------------------------------------------------ coarse prior


def test_downscaling_preserves_each_coarse_cell_volume():
    rng = np.random.default_rng(0)
    fine_bed = rng.random((8, 12))
    coarse_bed = fine_bed.reshape(2, 4, 3, 4).mean(axis=(1, 3))
    coarse_depth = np.array([[0.0, 0.3, 1.2], [0.05, 0.0, 2.0]])
    fine = downscale_depth(coarse_depth, coarse_bed, fine_bed, 4, np.ones((8, 12), bool))
    assert (fine >= 0).all()
    np.testing.assert_allclose(fine.reshape(2, 4, 3, 4).sum(axis=(1, 3)), coarse_depth * 16, rtol=1e-12)
    # deep water over a block gives a flat surface: depth follows the fine bed
    block = (fine + fine_bed)[4:, 8:]
    assert np.ptp(block) < 1e-12


def test_coarse_dynamic_prior_runs_the_solver():
    torch.set_num_threads(1)
    ter = synthetic_lowland(32, dx=20.0, seed=3)
    rain = np.array([20.0, 40.0, 10.0])
    prior = coarse_dynamic_prior(ter.elevation, ter.dx, rain, "left=sea:0.0", factor=4, manning=0.03)
    assert prior.shape == (4, 32, 32) and prior.dtype == np.float32
    assert (prior >= 0).all() and prior[0].max() == 0
    # all-closed: every drop of rain stays, so the downscaled volume is the rain volume
    closed = coarse_dynamic_prior(ter.elevation, ter.dx, rain, "", factor=4)
    vol = closed.sum(axis=(1, 2), dtype=np.float64) * ter.dx ** 2
    np.testing.assert_allclose(vol[1:], np.cumsum(rain) / 1000 * (32 * 20.0) ** 2, rtol=1e-4)


# ------------------------------------------------------------------------------ command


def test_spm_command_writes_cf_netcdf(tmp_path, capsys):
    ter = synthetic_lowland(24, dx=20.0, seed=1)
    np.save(tmp_path / "dem.npy", ter.elevation)
    out = tmp_path / "spm.nc"
    assert main(["spm", "--dem", str(tmp_path / "dem.npy"), "--dx", "20", "--boundary", "left=sea:0",
                 "--bins", "10:50:20", "--out", str(out)]) == 0
    assert "3 maps" in capsys.readouterr().out
    with xr.open_dataset(out) as ds:
        assert ds.attrs["Conventions"] == "CF-1.10"
        assert ds["spm"].dims == ("rain_bin", "y", "x") and ds["spm"].attrs["units"] == "m"
        assert ds["rain_bin"].values.tolist() == [10.0, 30.0, 50.0] and ds["rain_bin"].attrs["units"] == "mm"
        assert ds["x"].attrs["units"] == "m" and np.allclose(np.diff(ds["x"].values), 20.0)
        fs = FillAndSpill(ter.elevation, 20.0, outlet_mask(ter.shape, "left=sea:0"))
        np.testing.assert_allclose(ds["spm"].values[1], fs.depth(30.0), atol=1e-6)
        np.testing.assert_allclose(ds["elevation"].values, ter.elevation)


def test_spm_command_keeps_the_crs(tmp_path):
    from rasterio.crs import CRS

    ter = synthetic_lowland(16, dx=20.0, seed=1)
    ter.crs = CRS.from_epsg(32651).to_wkt()
    write_dem(ter, tmp_path / "dem.tif")
    assert main(["spm", "--dem", str(tmp_path / "dem.tif"), "--bins", "5:10:5", "--out", str(tmp_path / "s.nc")]) == 0
    with xr.open_dataset(tmp_path / "s.nc") as ds:
        assert CRS.from_wkt(ds["crs"].attrs["crs_wkt"]) == CRS.from_epsg(32651)
        assert ds["spm"].attrs["grid_mapping"] == "crs"


@pytest.mark.parametrize("argv, message", [
    (["--dx", "20", "--bins", "5:1:5"], "--bins"),
    (["--bins", "5:10:5"], "--dx"),
    (["--dx", "20", "--boundary", "left=lake"], "--boundary"),
])
def test_spm_command_errors(tmp_path, capsys, argv, message):
    np.save(tmp_path / "dem.npy", np.zeros((4, 4), np.float32))
    out = tmp_path / "spm.nc"
    assert main(["spm", "--dem", str(tmp_path / "dem.npy"), "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
