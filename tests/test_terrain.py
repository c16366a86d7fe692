"""Tests of piff.hydro.terrain: synthetic lowland, jacksboro, DEM readers/writers and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from piff.errors import PiffInputError
from piff.hydro.terrain import Terrain, condition_dem, jacksboro, read_dem, synthetic_lowland, write_dem

UTM51 = CRS.from_epsg(32651)  # Taiwan: a projected CRS in metres


def from_origin(west, north, xsize, ysize):
    """North-up affine transform (rasterio.transform.from_origin without its deprecation warning)."""
    return rasterio.Affine(xsize, 0.0, west, 0.0, -ysize, north)


# ------------------------------------------------------------------------------ synthetic


def test_synthetic_is_deterministic_per_seed():
    a, b = synthetic_lowland(48, seed=3), synthetic_lowland(48, seed=3)
    c = synthetic_lowland(48, seed=4)
    np.testing.assert_array_equal(a.elevation, b.elevation)
    assert not np.array_equal(a.elevation, c.elevation)
    assert a.elevation.dtype == np.float32 and np.isfinite(a.elevation).all()


@pytest.mark.parametrize("edge", ["left", "right", "top", "bottom"])
def test_synthetic_slopes_down_to_the_sea_edge(edge):
    ter = synthetic_lowland((40, 56), dx=20.0, seed=1, sea_edge=edge, drains=False)
    z = ter.elevation
    assert z.shape == (40, 56) and ter.sea_edge == edge
    near = {"left": z[:, :5], "right": z[:, -5:], "top": z[:5], "bottom": z[-5:]}[edge]
    far = {"left": z[:, -5:], "right": z[:, :5], "top": z[-5:], "bottom": z[:5]}[edge]
    assert near.mean() < far.mean() - 0.5
    sea_cells = {"left": z[:, 0], "right": z[:, -1], "top": z[0], "bottom": z[-1]}[edge]
    assert 0.0 < sea_cells.min() < 0.5  # a little above sea level


def test_synthetic_has_ponds_and_drains_reaching_the_sea():
    flat = synthetic_lowland(64, seed=2, relief_m=0.0, slope=0.0, n_ponds=0, roads=False, drains=False)
    ponds = synthetic_lowland(64, seed=2, relief_m=0.0, slope=0.0, n_ponds=3, roads=False, drains=False)
    dip = flat.elevation - ponds.elevation
    assert 0.4 < dip.max() < 2.0 + 1e-6
    ter = synthetic_lowland(64, seed=2, drains=True)
    assert ter.elevation[:, 0].min() == pytest.approx(0.05, abs=1e-6)  # a drain outfall at the sea


def test_condition_dem_fills_single_cell_pits_only():
    z = np.full((6, 6), 5.0, np.float32)
    z[2, 2] = 1.0  # single-cell pit
    z[4, 3] = z[4, 4] = 2.0  # two-cell depression: kept
    z[0, 3] = 0.0  # edge pit: an outlet, kept
    out = condition_dem(z)
    assert out[2, 2] == 5.0 and out[4, 3] == 2.0 and out[0, 3] == 0.0


def test_jacksboro_crop_resample_and_relief():
    full = jacksboro()
    assert full.elevation.shape == (344, 403) and 80 < full.dx < 86
    small = jacksboro(size=(32, 40), dx=100.0, relief_m=3.0, offset=2)
    assert small.elevation.shape == (32, 40) and small.dx == 100.0
    assert 0.0 <= small.elevation.min() < 0.1  # 0 unless a single-cell pit was filled
    assert small.elevation.max() == pytest.approx(3.0, abs=1e-5)
    other = jacksboro(size=(32, 40), dx=100.0, relief_m=3.0, offset=3)
    assert not np.array_equal(small.elevation, other.elevation)


# ------------------------------------------------------------------------------ GeoTIFF


def _tif(path, data, *, transform=None, crs=UTM51, nodata=None, dtype="float32"):
    data = np.asarray(data)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2],
                       count=1 if data.ndim == 2 else data.shape[0], dtype=dtype, crs=crs, nodata=nodata,
                       transform=transform or from_origin(160000.0, 2550000.0, 20.0, 20.0)) as dst:
        dst.write(data if data.ndim == 3 else data[None])
    return path


def test_geotiff_round_trip_keeps_crs_transform_and_nodata(tmp_path):
    z = np.arange(30, dtype=np.float32).reshape(5, 6)
    z[1, 2] = -9999.0
    tr = from_origin(160000.0, 2550000.0, 20.0, 20.0)
    ter = read_dem(_tif(tmp_path / "dem.tif", z, transform=tr, nodata=-9999.0))
    assert ter.dx == 20.0 and ter.name == "dem"
    assert CRS.from_wkt(ter.crs) == UTM51
    assert ter.transform == tuple(tr)[:6]
    assert ter.nodata_mask[1, 2] and ter.nodata_mask.sum() == 1 and np.isnan(ter.elevation[1, 2])
    write_dem(ter, tmp_path / "copy.tif")
    back = read_dem(tmp_path / "copy.tif")
    assert CRS.from_wkt(back.crs) == UTM51 and back.transform == ter.transform
    np.testing.assert_array_equal(back.nodata_mask, ter.nodata_mask)
    np.testing.assert_array_equal(back.elevation, ter.elevation)


def test_geotiff_south_up_is_flipped(tmp_path):
    z = np.arange(12, dtype=np.float32).reshape(3, 4)
    tr = rasterio.Affine(10.0, 0, 0.0, 0, 10.0, 1000.0)  # row 0 = south
    ter = read_dem(_tif(tmp_path / "s.tif", z, transform=tr))
    np.testing.assert_array_equal(ter.elevation, z[::-1])
    assert ter.transform[4] == -10.0 and ter.transform[5] == 1030.0


@pytest.mark.parametrize("case, message", [
    ("nonsquare", "non-square cells"),
    ("geographic", "geographic CRS"),
    ("allnodata", "every cell is nodata"),
    ("nan_no_nodata", "NaN or infinite"),
    ("bands", "2 bands"),
    ("notgeo", "no georeferencing"),
])
def test_geotiff_errors_name_the_file(tmp_path, case, message):
    z = np.ones((4, 4), np.float32)
    path = tmp_path / f"{case}.tif"
    if case == "nonsquare":
        _tif(path, z, transform=from_origin(0, 100, 20.0, 30.0))
    elif case == "geographic":
        _tif(path, z, crs=CRS.from_epsg(4326), transform=from_origin(120.0, 23.0, 0.0002, 0.0002))
    elif case == "allnodata":
        _tif(path, np.full((4, 4), -1.0, np.float32), nodata=-1.0)
    elif case == "nan_no_nodata":
        z[0, 0] = np.nan
        _tif(path, z)
    elif case == "bands":
        _tif(path, np.ones((2, 4, 4), np.float32))
    elif case == "notgeo":
        with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
            _tif(path, z, crs=None, transform=rasterio.Affine.identity())
    with pytest.raises(PiffInputError, match=message) as err:
        read_dem(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_geographic_tif_accepted_with_explicit_dx(tmp_path):
    path = _tif(tmp_path / "g.tif", np.ones((4, 4), np.float32), crs=CRS.from_epsg(4326),
                transform=from_origin(120.0, 23.0, 0.0002, 0.0002))
    assert read_dem(path, dx=22.0).dx == 22.0


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(PiffInputError, match="does not exist"):
        read_dem(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(PiffInputError, match="not a readable raster") as err:
        read_dem(junk)
    assert "junk.tif" in str(err.value)


# ------------------------------------------------------------------------------ netCDF / npy


def test_netcdf_round_trip_and_reader(tmp_path):
    ter = synthetic_lowland((12, 16), dx=25.0, seed=0)
    ter.elevation[3, 4] = np.nan
    ter.nodata_mask = ~np.isfinite(ter.elevation)
    ter.crs = UTM51.to_wkt()
    write_dem(ter, tmp_path / "dem.nc")
    back = read_dem(tmp_path / "dem.nc")
    assert back.dx == pytest.approx(25.0) and back.elevation.shape == (12, 16)
    np.testing.assert_array_equal(back.nodata_mask, ter.nodata_mask)
    np.testing.assert_allclose(back.elevation, ter.elevation, equal_nan=True)
    assert CRS.from_wkt(back.crs) == UTM51
    assert back.transform == pytest.approx(ter.geotransform())


def test_netcdf_other_variable_names_and_south_up(tmp_path):
    import xarray as xr

    z = np.arange(20.0).reshape(4, 5)
    ds = xr.Dataset({"Band1": (("y", "x"), z)}, coords={"x": np.arange(5) * 10.0, "y": np.arange(4) * 10.0})
    ds.to_netcdf(tmp_path / "b.nc")
    ter = read_dem(tmp_path / "b.nc")
    assert ter.dx == 10.0
    np.testing.assert_array_equal(ter.elevation, z[::-1])  # y increasing: flipped to north-up


@pytest.mark.parametrize("case, message", [
    ("nodims", "no x/y coordinates"),
    ("three_d", "must be 2-D"),
    ("nonsquare", "non-square"),
    ("several", "several 2-D variables"),
    ("nan", "NaN or infinite"),
])
def test_netcdf_errors(tmp_path, case, message):
    import xarray as xr

    path = tmp_path / f"{case}.nc"
    z = np.ones((4, 5))
    xy = {"x": np.arange(5) * 10.0, "y": np.arange(4) * -10.0}
    if case == "nodims":
        ds = xr.Dataset({"elevation": (("r", "c"), z)})
    elif case == "three_d":
        ds = xr.Dataset({"elevation": (("t", "y", "x"), np.ones((2, 4, 5)))}, coords=xy)
    elif case == "nonsquare":
        ds = xr.Dataset({"elevation": (("y", "x"), z)}, coords={"x": np.arange(5) * 10.0, "y": np.arange(4) * -20.0})
    elif case == "several":
        ds = xr.Dataset({"a": (("y", "x"), z), "b": (("y", "x"), z)}, coords=xy)
    else:
        z[1, 1] = np.nan
        ds = xr.Dataset({"elevation": (("y", "x"), z)}, coords=xy)
    ds.to_netcdf(path, encoding={v: {"_FillValue": None} for v in ds.data_vars})
    with pytest.raises(PiffInputError, match=message) as err:
        read_dem(path)
    assert str(path) in str(err.value)


def test_npy_needs_dx_and_round_trips(tmp_path):
    z = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    z[0, 0] = np.nan
    np.save(tmp_path / "d.npy", z)
    with pytest.raises(PiffInputError, match="--dx"):
        read_dem(tmp_path / "d.npy")
    ter = read_dem(tmp_path / "d.npy", dx=2.0)
    assert ter.dx == 2.0 and ter.nodata_mask[0, 0] and ter.nodata_mask.sum() == 1
    write_dem(ter, tmp_path / "e.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), ter.elevation)
    np.save(tmp_path / "one_d.npy", np.ones(5))
    with pytest.raises(PiffInputError, match="2-D"):
        read_dem(tmp_path / "one_d.npy", dx=1.0)
    np.save(tmp_path / "inf.npy", np.full((3, 3), np.inf))
    with pytest.raises(PiffInputError, match="infinite"):
        read_dem(tmp_path / "inf.npy", dx=1.0)


def test_write_dem_unknown_suffix(tmp_path):
    ter = Terrain(np.zeros((3, 3), np.float32), 1.0)
    with pytest.raises(PiffInputError, match="unknown DEM format"):
        write_dem(ter, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
