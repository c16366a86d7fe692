"""`piff simulate` round trip: .npy DEM + rainfall CSV -> CF netCDF."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from piff import cli
from piff.hydro.continuity import water_balance_residual_m


def main(argv):
    return cli.main(argv)



@pytest.fixture
def inputs(tmp_path):
    n = 16
    y, x = np.mgrid[0:n, 0:n] / n
    z = (1.5 * x + 0.5 * np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y)
         - np.exp(-((x - 0.4) ** 2 + (y - 0.5) ** 2) / 0.02))
    z[0, -1] = np.nan  # one nodata cell
    dem = tmp_path / "dem.npy"
    np.save(dem, z.astype(np.float32))
    rain = tmp_path / "rain.csv"
    rain.write_text("hour,mm_per_h\n1,40\n2,120\n3,0\n")
    return dem, rain


def _continuity_residual(ds):
    """The identity of docs/architecture.md evaluated on the file's variables (metres), 0 at nodata."""
    d, fx, fy = (ds[v].values.astype(np.float64) for v in ("depth", "flux_x", "flux_y"))
    res = water_balance_residual_m(d[1:], d[:-1], fx[1:], fy[1:], ds.rainfall.values[1:], ds.attrs["dx_m"],
                                   ds.loss.values[1:])
    return np.where(np.isnan(ds.elevation.values), 0.0, res)


def test_simulate_writes_cf_netcdf(inputs, tmp_path, capsys):
    dem, rain = inputs
    out = tmp_path / "flood.nc"
    rc = main(["simulate", "--dem", str(dem), "--dx", "20", "--rain", str(rain), "--boundary", "left=sea:0.0",
               "--out", str(out)])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "peak depth" in line and "mass residual" in line and "1 nodata cells (NaN)" in line
    with xr.open_dataset(out) as ds:
        assert ds.attrs["Conventions"] == "CF-1.10"
        assert "piff simulate" in ds.attrs["history"] and ds.attrs["piff_version"]
        assert ds.depth.dims == ("time", "y", "x") and ds.depth.shape == (4, 16, 16)
        assert ds.flux_x.shape == (4, 16, 17) and ds.flux_y.shape == (4, 17, 16)
        for name in ("depth", "vx", "vy", "flux_x", "flux_y", "elevation", "rainfall", "loss", "x", "y", "time"):
            assert ds[name].attrs.get("units"), name
        assert ds.time.attrs["units"] == "h" and list(ds.time.values) == [0, 1, 2, 3]
        np.testing.assert_allclose(np.diff(ds.x.values), 20.0)
        assert np.all(np.diff(ds.y.values) < 0)  # north-up: y decreases with the row
        np.testing.assert_allclose(ds.rainfall.values, [0, 40, 120, 0])
        # the nodata cell is NaN in every map (not a dry 0), and only there
        for name in ("elevation", "depth", "vx", "vy", "loss"):
            nan = np.isnan(ds[name].values).reshape(-1, 16, 16)
            assert nan[:, 0, -1].all() and nan.sum() == nan.shape[0], name
        assert ds.attrs["nodata_cells"] == 1
        assert abs(ds.attrs["mass_balance_relative_residual"]) < 1e-9
        assert ds.attrs["mass_balance_boundary_outflow_m3"] > 0
        assert ds.attrs["solver_boundaries"].startswith("left=sea:0")
        assert ds.depth.encoding.get("zlib")
        assert np.abs(_continuity_residual(ds)).max() < 1e-5  # float32 file
    assert not list(tmp_path.glob(".flood.nc.tmp*"))


def test_simulate_bad_boundary_fails_cleanly_and_keeps_old_output(inputs, tmp_path, capsys):
    dem, rain = inputs
    out = tmp_path / "flood.nc"
    out.write_text("previous result")
    rc = main(["simulate", "--dem", str(dem), "--dx", "20", "--rain", str(rain), "--boundary", "left=lake",
               "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--boundary" in err
    assert out.read_text() == "previous result"


def test_simulate_npy_without_dx_names_the_dem(inputs, tmp_path, capsys):
    dem, rain = inputs
    rc = main(["simulate", "--dem", str(dem), "--rain", str(rain), "--out", str(tmp_path / "x.nc")])
    assert rc == 2
    assert str(dem) in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists()


def test_simulate_picks_a_scenario_from_a_piff_rainfall_file(inputs, tmp_path):
    dem, _ = inputs
    rain = tmp_path / "scenario_rainfall.csv"
    rain.write_text("time,inflow_01,inflow_02\n1,10,60\n2,20,0\n")
    out = tmp_path / "s2.nc"
    assert main(["simulate", "--dem", str(dem), "--dx", "20", "--rain", str(rain), "--scenario", "2",
                 "--dtype", "float64", "--out", str(out)]) == 0
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds.rainfall.values, [0, 60, 0])
        assert ds.attrs["scenario"] == "2" and ds.depth.dtype == np.float64
        assert np.abs(_continuity_residual(ds)).max() < 1e-12
