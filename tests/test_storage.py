"""The two netCDF codecs of piff.cf: zstd for piff's own large files, zlib for products."""
import netCDF4
import numpy as np
import pytest
import xarray as xr

from piff import cf
from piff.data import format as fmt


def _maps():
    rng = np.random.default_rng(0)
    depth = np.where(rng.random((3, 4, 16, 16)) < 0.5, 0.0, rng.gamma(2.0, 0.05, (3, 4, 16, 16))).astype(np.float32)
    return xr.Dataset({"depth": (("storm", "time", "y", "x"), depth, {"units": "m"})},
                      coords={"time": np.arange(4), "y": np.arange(16.0), "x": np.arange(16.0)})


def _filters(path, name):
    with netCDF4.Dataset(path) as nc:
        return nc[name].filters()


@pytest.mark.skipif(not cf.codec_available(cf.FAST), reason="this netCDF4 build has no zstd")
def test_datasets_are_zstd_and_products_zlib_both_lossless(tmp_path):
    ds = _maps()
    own = fmt.write_netcdf(ds, tmp_path / "dataset.nc")
    product = cf.write_netcdf(ds, tmp_path / "product.nc")
    assert _filters(own, "depth")["zstd"] and not _filters(own, "depth")["zlib"]
    assert _filters(product, "depth")["zlib"] and not _filters(product, "depth")["zstd"]
    assert _filters(product, "depth")["shuffle"]
    for path in (own, product):
        with xr.open_dataset(path) as back:
            np.testing.assert_array_equal(back.depth.values, ds.depth.values)  # bit for bit
            assert back.depth.encoding["chunksizes"] == (1, 1, 16, 16)  # one map per chunk


def test_without_zstd_support_the_writer_falls_back_to_zlib(tmp_path, monkeypatch):
    monkeypatch.setattr(netCDF4, "__has_zstandard_support__", 0, raising=False)
    assert not cf.codec_available(cf.FAST)
    path = fmt.write_netcdf(_maps(), tmp_path / "dataset.nc")
    assert _filters(path, "depth")["zlib"]
    with xr.open_dataset(path) as back:
        np.testing.assert_array_equal(back.depth.values, _maps().depth.values)


def test_an_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="codec must be"):
        cf.encoding_for(_maps(), codec="lzma")
