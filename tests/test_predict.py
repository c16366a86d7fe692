"""``piff predict``: tiling and blending, GeoTIFF/netCDF georeferencing, seams, nodata,
ensembles and input errors, with a real model trained for a few steps on the tiny dataset."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from rasterio.crs import CRS

from piff.cli import main
from piff.errors import PiffInputError
from piff.hydro.terrain import Terrain, read_dem, synthetic_lowland, write_dem
from piff.inference import predict as P
from piff.inference import tiling

TWD97 = CRS.from_epsg(3826).to_wkt()  # projected, metres (Taiwan)
ORIGIN = (168000.0, 2545000.0)  # top-left corner in TWD97 metres (near Tainan)
RAIN = [5.0, 10.0, 30.0, 50.0, 20.0, 5.0]  # mm/h, a 6-hour forecast


# -------------------------------------------------------------- fixtures (model_path, trained: conftest.py)
def georeferenced(size, seed=7, dx=20.0, crs=TWD97, nodata_box=None) -> Terrain:
    """A synthetic lowland DEM placed in TWD97, optionally with a nodata rectangle."""
    t = synthetic_lowland(size, dx, seed=seed)
    z = t.elevation.copy()
    mask = None
    if nodata_box is not None:
        mask = np.zeros(z.shape, bool)
        mask[nodata_box] = True
        z[mask] = np.nan
    return Terrain(z, dx, crs=crs, transform=(dx, 0.0, ORIGIN[0], 0.0, -dx, ORIGIN[1]), nodata_mask=mask)


@pytest.fixture
def files(tmp_path):
    """A 48x48 GeoTIFF DEM (3x the training size, with a nodata corner) and a 6-h forecast."""
    dem = write_dem(georeferenced(48, nodata_box=(slice(0, 5), slice(0, 7))), tmp_path / "city.tif")
    rain = tmp_path / "forecast.csv"
    rain.write_text("hour,mm_per_h\n" + "".join(f"{h},{v}\n" for h, v in enumerate(RAIN, 1)))
    return dem, rain


def run_cli(*argv):
    return main(["predict", "--no-progress", "--device", "cpu", *map(str, argv)])


# ----------------------------------------------------------------------------- tiling (pure)
def test_tile_starts_cover_the_raster_and_align_the_last_tile():
    assert tiling.tile_starts(16, 16, 0.25) == [0]
    assert tiling.tile_starts(10, 16, 0.25) == [0]  # smaller than a tile: padded by the caller
    assert tiling.tile_starts(48, 16, 0.0) == [0, 16, 32]
    assert tiling.tile_starts(48, 16, 0.5) == [0, 8, 16, 24, 32]
    for n, tile, overlap in [(48, 16, 0.25), (50, 16, 0.25), (257, 64, 0.3), (17, 16, 0.9)]:
        starts = tiling.tile_starts(n, tile, overlap)
        assert starts[0] == 0 and starts[-1] == n - tile
        assert all(0 < b - a <= round(tile * (1 - overlap)) for a, b in zip(starts, starts[1:]))


def test_blend_weights_are_positive_symmetric_and_peak_in_the_middle():
    w = tiling.blend_weights((16, 8))
    assert w.shape == (16, 8) and np.all(w > 0)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[7:9, 3:5].min() == pytest.approx(w.max())
    assert w[0, 0] < 1e-3 * w.max()  # a window's corner hardly counts next to a neighbour's centre


@pytest.mark.parametrize("shape, overlap", [((48, 48), 0.25), ((37, 52), 0.5), ((10, 12), 0.25)])
def test_predict_tiled_is_exact_for_a_pointwise_function(shape, overlap):
    """The weights are normalised, so a window-independent fn comes back unchanged, including
    on a raster smaller than a window (padded, then cropped) and with extra output axes."""
    field = np.random.default_rng(0).normal(size=shape)
    out = tiling.predict_tiled(lambda b: np.stack([2 * b["z"], b["z"] ** 2], axis=1), {"z": field}, 16, overlap,
                               batch_size=3)
    np.testing.assert_allclose(out, np.stack([2 * field, field ** 2]), rtol=1e-12, atol=1e-12)


def test_predict_whole_pads_calls_once_and_crops():
    field = np.random.default_rng(1).normal(size=(2, 37, 45))
    calls = []

    def fn(b):
        calls.append(b["z"].shape)
        return np.stack([3 * b["z"], b["z"] ** 2], axis=1)

    out = tiling.predict_whole(fn, {"z": field}, (40, 48))
    assert calls == [(1, 2, 40, 48)]
    np.testing.assert_array_equal(out, np.stack([3 * field, field ** 2]))
    with pytest.raises(ValueError, match="smaller than the raster"):
        tiling.predict_whole(fn, {"z": field}, (32, 48))


def max_jump_at(d: np.ndarray, boundaries) -> tuple[float, float]:
    """Largest |difference| between neighbouring columns across ``boundaries`` and elsewhere."""
    jumps = np.abs(np.diff(d, axis=-1))
    at = np.zeros(jumps.shape[-1], bool)
    at[[b - 1 for b in boundaries]] = True
    return float(jumps[..., at].max()), float(jumps[..., ~at].max())


def test_blending_hides_seams_of_window_dependent_outputs():
    """A network's output depends on its whole window (group-norm statistics, attention): mimic
    that with fn = field + (window mean of the field) and a smooth field. Hard stitching (no
    overlap) shows a step at every window edge; blending spreads the windows' disagreement over
    the overlap, so no step is larger than the field's own cell-to-cell change."""
    y, x = np.mgrid[0:48, 0:48]
    field = np.sin(x / 7.0) + 0.5 * np.cos(y / 5.0) + 0.02 * x  # smooth: ~0.2 per cell at most

    def fn(b):
        return b["z"] + 3.0 * b["z"].mean(axis=(-2, -1), keepdims=True)

    hard = tiling.predict_tiled(fn, {"z": field}, 16, 0.0) - field
    assert max_jump_at(hard, [16, 32])[0] > 0.5  # the step a seam leaves
    blended = tiling.predict_tiled(fn, {"z": field}, 16, 0.25)
    at, elsewhere = max_jump_at(blended, [b for s in tiling.tile_starts(48, 16, 0.25) for b in (s, s + 16)
                                          if 0 < b < 48])
    assert at <= elsewhere


# ----------------------------------------------------------------------------- options
def test_parse_hours():
    assert P.parse_hours(None, 4) == [1, 2, 3, 4]
    assert P.parse_hours("1-3,6,3", 24) == [1, 2, 3, 6]
    for bad in ("0-3", "a", "3-", "5-3", "1,,2"):
        with pytest.raises(PiffInputError, match="--hours"):
            P.parse_hours(bad, 24)


# ----------------------------------------------------------------------------- model runs
def test_geotiff_round_trip_keeps_crs_transform_and_nodata(model_path, files, tmp_path):
    dem, rain = files
    out = tmp_path / "flood.tif"
    assert run_cli("--model", model_path, "--dem", dem, "--rain", rain, "--hours", "4", "--nfe", "2",
                   "--tile", "16", "--out", out) == 0
    src_dem = read_dem(dem)
    with rasterio.open(out) as src:
        depth = src.read(1)
        assert src.tags()["inference"] == "tiled" and src.tags()["tiles_per_hour"] == "16"
        assert src.crs == CRS.from_epsg(3826)
        assert tuple(src.transform)[:6] == pytest.approx(src_dem.transform)
        assert np.isnan(src.nodata)
    assert np.array_equal(np.isnan(depth), src_dem.nodata_mask)
    assert np.all(depth[~src_dem.nodata_mask] >= 0)


def test_netcdf_layout_units_and_provenance(model_path, files, tmp_path, capsys):
    dem, rain = files
    out = tmp_path / "flood.nc"
    assert run_cli("--model", model_path, "--dem", dem, "--rain", rain, "--hours", "2,5", "--nfe", "2",
                   "--out", out) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "flooded area (> 0.3 m)" in line and "km2" in line and "peak depth" in line
    with xr.open_dataset(out) as ds:
        assert ds.attrs["Conventions"] == "CF-1.10"
        assert ds["depth_mean"].dims == ("time", "y", "x") and ds["p_exceed"].dims == ("time", "threshold", "y", "x")
        assert ds["time"].values.tolist() == [2.0, 5.0]
        assert ds["threshold"].values.tolist() == pytest.approx([0.1, 0.3, 0.5])
        assert CRS.from_wkt(ds["crs"].attrs["crs_wkt"]) == CRS.from_epsg(3826)
        assert ds["x"].values[0] == pytest.approx(ORIGIN[0] + 10.0)  # cell centres in TWD97 metres
        assert ds["y"].values[0] == pytest.approx(ORIGIN[1] - 10.0)
        for name in ("depth_mean", "depth_std", "p_exceed", "prior", "elevation", "rainfall", "x", "y", "time"):
            assert "units" in ds[name].attrs, name
        for key in ("model", "model_fingerprint", "nfe", "sampler", "members", "seed", "rainfall_file",
                    "piff_version", "prior"):
            assert key in ds.attrs, key
        assert ds.attrs["prior"] == "spm" and ds.attrs["nfe"] == 2
        assert ds.attrs["inference"] == "whole-domain" and ds.attrs["tiles_per_hour"] == 1
        assert float(ds["rainfall"][1]) == RAIN[4]
        assert ds.attrs["attention"] == "windows of 16x16 cells"  # the 48x48 DEM is larger than the training maps
        default_maps = ds["depth_mean"].values
    # the CLI's --attention and --precision reach the network and the output's attributes
    other = tmp_path / "flood_global_fp32.nc"
    assert run_cli("--model", model_path, "--dem", dem, "--rain", rain, "--hours", "2,5", "--nfe", "2",
                   "--attention", "global", "--precision", "fp32", "--out", other) == 0
    with xr.open_dataset(other) as ds:
        assert (ds.attrs["attention"], ds.attrs["precision"]) == ("global", "float32")
        assert not np.array_equal(ds["depth_mean"].values, default_maps, equal_nan=True)  # nodata: NaN in both


def seam_ratio(d: np.ndarray, tile: int, overlap: float) -> float:
    """Mean |neighbour difference| of ``d`` across the windows' edges / elsewhere (both axes)."""
    n = d.shape[-1]
    edges = {b for s in tiling.tile_starts(n, tile, overlap) for b in (s, s + tile) if 0 < b < n}
    at = np.zeros(n - 1, bool)
    at[[b - 1 for b in edges]] = True
    gx, gy = np.abs(np.diff(d, axis=-1)), np.abs(np.diff(d, axis=-2))
    seam = np.concatenate([gx[..., at].ravel(), gy[..., at, :].ravel()])
    rest = np.concatenate([gx[..., ~at].ravel(), gy[..., ~at, :].ravel()])
    return float(seam.mean() / rest.mean())


def test_tiled_prediction_has_no_seams(trained):
    """A 48x48 DEM (3x the 16x16 training size) predicted with 16x16 windows vs in one piece
    (48 is a multiple of the U-Net's 8, so the fully convolutional net also runs untiled).

    Criterion, and why: the difference tiled - untiled is what tiling adds. The terrain's own
    relief is removed by taking that difference, so a seam shows up as a difference field that
    jumps at the windows' edges. Hard stitching (overlap 0) is the control: its jumps at the
    edges are several times the jumps elsewhere. Blended windows must not jump more at their
    edges than elsewhere (ratio <= 1.5), and the tiled maps must stay within 1 % of the depth
    range of the untiled ones everywhere.
    """
    terrain = georeferenced(48, seed=8)
    kw = dict(nfe=2, sampler="euler")
    whole = P.predict_maps(trained, terrain, RAIN, [3, 6], tile=48, **kw)["depth_mean"].values
    hard = P.predict_maps(trained, terrain, RAIN, [3, 6], overlap=0.0, tile=16, **kw)["depth_mean"].values
    tiled = P.predict_maps(trained, terrain, RAIN, [3, 6], overlap=0.25, tile=16, **kw)["depth_mean"].values
    assert seam_ratio(hard - whole, 16, 0.0) > 2.0  # the metric sees seams when there are some
    assert seam_ratio(tiled - whole, 16, 0.25) <= 1.5
    assert np.abs(tiled - whole).max() <= 0.01 * np.ptp(whole)


def test_whole_domain_agrees_with_tiles(trained):
    """A 44x52 DEM with a nodata box, larger than the 16x16 training maps and not a multiple of
    the U-Net's 8 (padded to 48x56), predicted whole (the default) and on blended 16x16 tiles.

    The two are not bit-identical and should not be: whole, the group normalisation sees the
    whole DEM instead of 16x16 windows (the attention attends within 16x16 windows, but not the
    tiles' windows), the reflected padding sits elsewhere, and the tiles are blended. Measured
    with this model: max |whole - tiled| 1.0e-4 of the depth range (0.3 mm of 2.9 m), mean
    6.6e-5 m, against a mean difference of 0.10 m between
    neighbouring cells; the bounds leave 2-3x room. This 4-step model hardly depends on its
    window (its hour-3 and hour-6 maps differ by 1e-8 of the range), so the test checks the
    plumbing (padding, cropping and alignment: a one-cell shift would cost ~0.1 m; nodata), not
    how far a trained network's attention carries over to maps larger than its training maps.
    """
    box = (slice(30, 38), slice(0, 9))
    terrain = georeferenced((44, 52), seed=10, nodata_box=box)
    kw = dict(nfe=2, sampler="euler")
    whole = P.predict_maps(trained, terrain, RAIN, [3, 6], **kw)
    tiled = P.predict_maps(trained, terrain, RAIN, [3, 6], tile=16, **kw)
    assert (whole.attrs["inference"], whole.attrs["tile"], whole.attrs["tiles_per_hour"]) == ("whole-domain",
                                                                                              [48, 56], 1)
    assert (tiled.attrs["inference"], tiled.attrs["tile"], tiled.attrs["tiles_per_hour"]) == ("tiled", [16, 16], 16)
    valid = ~terrain.nodata_mask
    for ds in (whole, tiled):
        for name in ("depth_mean", "depth_std", "p_exceed"):
            values = ds[name].values
            assert np.isnan(values[..., box[0], box[1]]).all() and np.isfinite(values[..., valid]).all(), name
    a, b = whole["depth_mean"].values, tiled["depth_mean"].values
    diff = np.abs(a - b)[:, valid]
    assert diff.max() <= 2e-4 * np.ptp(b[:, valid])
    assert diff.mean() <= 2e-3 * np.nanmean(np.abs(np.diff(b, axis=-1)))
    # on the CPU the weights were converted to channels_last once, and stay so for the next call
    assert trained.model.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


RAIN_12H = RAIN + RAIN[::-1]


@pytest.mark.parametrize("tile", [None, 16])
def test_hours_in_one_pass_equal_hours_alone(trained, tile):
    """Hours 3, 7 and 12 predicted together (9 maps in calls of 8: hours and members share
    calls; tiled, one window per pass instead of two) give each hour the members it gets alone:
    every map draws its noise from its own generator. Bit-identical on this CPU; the tolerance
    allows for kernels that round differently at another batch size (1e-6 m is far below the
    sampler's noise)."""
    terrain = georeferenced(24, seed=6)
    kw = dict(nfe=3, sampler="euler_maruyama", members=3, seed=5, tile=tile, batch_size=8)
    together = P.predict_maps(trained, terrain, RAIN_12H, [3, 7, 12], **kw)
    assert together.attrs["maps_per_call"] == 8 and together["depth_std"].values.max() > 0
    for k, hour in enumerate([3, 7, 12]):
        alone = P.predict_maps(trained, terrain, RAIN_12H, [hour], **kw)
        for name in ("depth_mean", "depth_std", "p_exceed"):
            np.testing.assert_allclose(alone[name].values[0], together[name].values[k], rtol=0, atol=1e-6,
                                       err_msg=f"hour {hour} {name}")


def test_inference_plan(trained, monkeypatch):
    """Whole domain when the padded DEM fits the memory budget (and, with global attention, the
    attention budget), else tiles of the training map size; an explicit tile forces tiles.
    Self-attention runs in windows of the training map size on larger maps by default."""
    per_call = P.CPU_CELLS_PER_CALL // (48 * 56)  # float32 on the CPU; bf16 calls hold twice as many cells
    assert P.inference_plan(trained, (44, 52), precision="fp32") == P.InferencePlan(True, (48, 56), per_call, (16, 16))
    bf16 = P.inference_plan(trained, (44, 52), precision="bf16")
    assert (bf16.precision, bf16.maps_per_call) == ("bf16", P.CPU_CELLS_PER_CALL_BF16 // (48 * 56))
    assert P.inference_plan(trained, (44, 52), attention="global", precision="fp32") == P.InferencePlan(
        True, (48, 56), per_call)
    assert P.inference_plan(trained, (44, 52), device="cuda").maps_per_call == P.MAX_CELLS_PER_CALL // (48 * 56)
    small = P.inference_plan(trained, (10, 13))
    assert small.window == (16, 16) and small.attention_window is None  # never below the training map size
    assert P.inference_plan(trained, (44, 52), tile=(16, 24), batch_size=5, precision="fp32") == P.InferencePlan(
        False, (16, 24), 5, (16, 16))
    assert P.inference_plan(trained, (44, 52), tile=16).attention == "global"  # a tile of the training size
    # global attention at 1/4 resolution: 256x256 is 4096 tokens, 264x256 is more; windows have no such limit
    assert P.inference_plan(trained, (256, 256), attention="global").whole
    assert P.inference_plan(trained, (260, 256), attention="global", precision="fp32") == P.InferencePlan(
        False, (16, 16), P.CPU_CELLS_PER_CALL // 256)
    assert P.inference_plan(trained, (260, 256)).attention == "windows of 16x16 cells"
    monkeypatch.setattr(P, "MAX_CELLS_PER_CALL", 1000)
    assert P.inference_plan(trained, (44, 52), device="cuda") == P.InferencePlan(False, (16, 16), 3)
    for bad in (dict(tile=12), dict(batch_size=0), dict(attention="local")):
        with pytest.raises(PiffInputError):
            P.inference_plan(trained, (44, 52), **bad)


@pytest.mark.parametrize("tile", [None, 16])
def test_nodata_cells_stay_nodata(trained, tile):
    box = (slice(20, 30), slice(0, 12))
    terrain = georeferenced(40, seed=9, nodata_box=box)  # 40: whole, or windows at 0, 12, 24 (overlap)
    ds = P.predict_maps(trained, terrain, RAIN, [2, 5], nfe=2, sampler="euler_maruyama", members=2, tile=tile)
    assert ds.attrs["inference"] == ("tiled" if tile else "whole-domain")
    for name in ("depth_mean", "depth_std", "p_exceed", "prior"):
        values = ds[name].values
        assert np.isnan(values[..., box[0], box[1]]).all(), name
        assert np.isfinite(values[..., ~terrain.nodata_mask]).all(), name


def test_small_dem_is_padded_to_one_window(trained):
    terrain = georeferenced((10, 13), seed=4)
    ds = P.predict_maps(trained, terrain, RAIN, [6], nfe=1)
    assert ds["depth_mean"].shape == (1, 10, 13) and np.isfinite(ds["depth_mean"]).all()


@pytest.mark.parametrize("tile", [None, 16])
def test_a_patch2_network_predicts_a_dem_of_any_size(tiny_dataset, tmp_path, tile):
    """The demo_patch2 network (size multiple 8, no full-resolution level) predicts a 37 x 45
    DEM whole (padded) and in tiles, at full resolution, nodata kept."""
    from model_utils import train_tiny_model

    from piff.model.trained import load_trained

    model = load_trained(train_tiny_model(tiny_dataset, tmp_path, model="demo_patch2", prediction="x0",
                                          prior_residual=True, time_sampling="anchored"))
    assert model.model.config.patch == 2 and model.model.config.size_multiple == 8
    box = (slice(3, 9), slice(0, 5))
    terrain = georeferenced((37, 45), seed=4, nodata_box=box)
    ds = P.predict_maps(model, terrain, RAIN, [3, 6], nfe=2, tile=tile)
    depth = ds["depth_mean"].values
    assert depth.shape == (2, 37, 45) and np.isnan(depth[:, box[0], box[1]]).all()
    assert np.isfinite(depth[:, ~terrain.nodata_mask]).all() and (depth[:, ~terrain.nodata_mask] >= 0).all()


def test_ensemble_probabilities(trained):
    terrain = georeferenced(24, seed=5)
    kw = dict(nfe=3, sampler="euler_maruyama", members=6, seed=11)
    ds = P.predict_maps(trained, terrain, RAIN, [3, 6], **kw)
    p = ds["p_exceed"].values
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p, axis=1) <= 0)  # non-increasing in the threshold
    assert np.all(ds["depth_std"].values >= 0) and ds["depth_std"].values.max() > 0
    assert ((p > 0) & (p < 1)).any()  # members disagree somewhere
    again = P.predict_maps(trained, terrain, RAIN, [6], **kw)  # same seed, other hours: same hour-6 members
    np.testing.assert_array_equal(again["depth_mean"].values[0], ds["depth_mean"].values[1])
    other = P.predict_maps(trained, terrain, RAIN, [6], **{**kw, "seed": 12})
    assert not np.array_equal(other["depth_mean"].values, again["depth_mean"].values)

    det = P.predict_maps(trained, terrain, RAIN, [3, 6], nfe=3, sampler="heun", members=6)
    assert det.attrs["members"] == 1
    assert np.all(det["depth_std"].values == 0)
    assert set(np.unique(det["p_exceed"].values)) <= {0.0, 1.0}


def test_spm_prior_matches_the_training_dataset(tiny_dataset):
    """On a training DEM, with the dataset's boundaries, the on-the-fly prior is the map the
    model was trained with (same window, same bin)."""
    from piff.data.torch_dataset import FloodMapDataset

    data = FloodMapDataset(tiny_dataset, "train", with_physics=False)
    with xr.open_dataset(tiny_dataset) as ds:
        sample = data[0]
        dem, storm, hour = int(sample["dem"]), int(sample["storm"]), int(sample["hour"])
        terrain = Terrain(ds["elevation"].values[dem], float(ds.attrs["cell_size_m"]))
        rain = ds["rainfall"].sel(storm=storm).values[1:]
        boundary = str(ds["boundary"].values[dem])
    prior = P.prior_maps(terrain, rain, [hour], boundary=boundary)
    np.testing.assert_allclose(prior[0], sample["prior"][0].numpy(), atol=1e-6)


def test_coarse_prior_shapes():
    terrain = georeferenced(16, seed=2)
    prior = P.prior_maps(terrain, np.array(RAIN), [2, 6], prior="coarse", coarse_factor=4)
    assert prior.shape == (2, 16, 16) and np.all(prior >= 0) and prior[1].sum() > 0


def test_resample_to_the_training_cell_size(model_path, tmp_path, files):
    _, rain = files
    dem = write_dem(georeferenced(40, dx=10.0), tmp_path / "fine.tif")
    out = tmp_path / "flood.nc"
    assert run_cli("--model", model_path, "--dem", dem, "--rain", rain, "--hours", "3", "--nfe", "1",
                   "--resample", "--out", out) == 0
    with xr.open_dataset(out) as ds:
        assert ds.sizes["y"] == ds.sizes["x"] == 20 and ds.attrs["resampled"] == 1
        assert ds["x"].values[0] == pytest.approx(ORIGIN[0] + 10.0)  # same corner, 20 m cells
        assert ds.attrs["cell_size_m"] == 20.0 and ds.attrs["dem_cell_size_m"] == 10.0


# ----------------------------------------------------------------------------- bad input
def write_geographic_dem(path):
    z = synthetic_lowland(16, 20.0, seed=1).elevation
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype="float32",
                       crs=CRS.from_epsg(4326), transform=rasterio.Affine(2e-4, 0.0, 120.2, 0.0, -2e-4, 23.0)) as dst:
        dst.write(z, 1)
    return path


@pytest.mark.parametrize("case, expect", [
    ("geographic", "geographic CRS"),
    ("geographic_dx", "geographic CRS"),
    ("rain_too_short", "has 6 hourly values but hour 24 was requested"),
    ("missing_model", "model file does not exist"),
    ("missing_dem", "DEM file does not exist"),
    ("missing_rain", "rainfall file does not exist"),
    ("cell_size", "cell size 10 m differs from the model's training cell size 20 m"),
    ("tif_many_hours", "a GeoTIFF holds one map"),
    ("tile", "window 12x12 must be a positive multiple of 8 cells"),
])
def test_bad_inputs_give_one_line_errors(case, expect, model_path, files, tmp_path, capsys):
    dem, rain = files
    args = {"--model": model_path, "--dem": dem, "--rain": rain, "--out": tmp_path / "flood.nc"}
    extra = []
    if case.startswith("geographic"):
        args["--dem"] = write_geographic_dem(tmp_path / "wgs84.tif")
        extra = ["--dx", "20"] if case == "geographic_dx" else []
    elif case == "rain_too_short":
        extra = ["--hours", "1-24"]
    elif case.startswith("missing_"):
        key = {"missing_model": "--model", "missing_dem": "--dem", "missing_rain": "--rain"}[case]
        args[key] = tmp_path / "nowhere" / "file"
    elif case == "cell_size":
        args["--dem"] = write_dem(georeferenced(32, dx=10.0), tmp_path / "fine.tif")
    elif case == "tif_many_hours":
        args["--out"] = tmp_path / "flood.tif"
    elif case == "tile":
        extra = ["--tile", "12"]
    argv = [x for kv in args.items() for x in kv] + extra
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    if case == "cell_size":
        assert "--resample" in err
    assert not (tmp_path / "flood.nc").exists() and not (tmp_path / "flood.tif").exists()


# ----------------------------------------------------------------------------- files of earlier versions
# What a model.pt of the first release (revision 06439cb) held: these meta keys, and an experiment
# config with these option names (the prior was called the SPM then: ``use_spm``).
FIRST_RELEASE_META = ("piff_version", "fingerprint", "step", "train_config", "dataset", "dataset_sha256",
                      "cell_size_m", "grid_shape", "model_config", "normaliser", "kind", "bridge")
FIRST_RELEASE_TRAIN_KEYS = (
    "dataset", "description", "type", "model", "noise", "sigma", "use_physics", "physics_weight", "physics_flux",
    "use_spm", "prior", "batch_size", "microbatch", "lr", "rain_encoder_lr", "weight_decay", "grad_clip",
    "ema_decay", "lr_schedule", "warmup_steps", "steps", "ckpt_every", "keep_checkpoints", "log_every", "nproc",
    "amp", "wall_time_budget_min", "nfe", "sampler", "members", "seed", "nodes", "eval_hours", "sample_batch_size")


def _as_first_release(config: dict, keys=None) -> dict:
    renamed = {("use_spm" if k == "use_prior" else k): v for k, v in config.items()}
    return {k: renamed[k] for k in (keys or renamed) if k in renamed}


def test_model_file_of_the_first_release_still_loads_and_predicts_the_same(model_path, trained, tmp_path):
    """Rewrite today's model.pt into the first release's layout (old key names, no keys added
    since) and check that it loads as the same model and predicts the same maps."""
    from piff.model.store import load_checkpoint, serialize
    from piff.model.trained import load_trained

    payload = load_checkpoint(model_path)
    meta = payload["piff"]
    old_meta = {k: meta[k] for k in FIRST_RELEASE_META}
    old_meta["model_config"] = _as_first_release(meta["model_config"])
    old_meta["train_config"] = _as_first_release(meta["train_config"], FIRST_RELEASE_TRAIN_KEYS)
    old_meta["bridge"] = {k: meta["bridge"][k] for k in ("noise", "sigma")}  # prediction etc. came later
    assert "use_spm" in old_meta["model_config"] and "use_spm" in old_meta["train_config"]
    old = tmp_path / "model_first_release.pt"
    old.write_bytes(serialize({**{k: v for k, v in payload.items() if k != "piff"}, "piff": old_meta}))

    loaded = load_trained(old)
    assert loaded.kind == trained.kind and loaded.prior == trained.prior == "spm"
    assert loaded.model.config == trained.model.config and loaded.rain_max_mm_per_h is None
    terrain = georeferenced(16, seed=3)
    kw = dict(nfe=2, sampler="euler")
    new_maps = P.predict_maps(trained, terrain, RAIN, [2, 5], **kw)["depth_mean"].values
    old_maps = P.predict_maps(loaded, terrain, RAIN, [2, 5], **kw)["depth_mean"].values
    np.testing.assert_array_equal(old_maps, new_maps)


def test_the_spm_analysis_is_reused_for_the_same_dem_only():
    """The fill-and-spill analysis depends on the DEM only: a second forecast on the same DEM
    reuses it (same object, same maps), another DEM gets its own, equal to a fresh analysis."""
    rain = np.asarray(RAIN)
    P._SPM_CACHE.clear()
    dem = synthetic_lowland(32, 20.0, seed=1, sea_edge="left")
    a = P.prior_maps(dem, rain, [3, 6])
    first = next(iter(P._SPM_CACHE.values()))
    b = P.prior_maps(dem, rain, [3, 6])
    assert next(iter(P._SPM_CACHE.values())) is first
    np.testing.assert_array_equal(a, b)
    other = synthetic_lowland(32, 20.0, seed=2, sea_edge="left")
    c = P.prior_maps(other, rain, [3, 6])
    assert next(iter(P._SPM_CACHE.values())) is not first and len(P._SPM_CACHE) == 1
    assert not np.array_equal(a, c)
    P._SPM_CACHE.clear()
    np.testing.assert_array_equal(P.prior_maps(other, rain, [3, 6]), c)


def test_precision_auto_is_bf16_where_native_and_bf16_maps_stay_close(trained):
    """``precision``: fp32 is the float32 network; bf16 runs it under bfloat16 autocast (emulated
    on a CPU without native bf16, so the test runs anywhere); auto picks bf16 exactly where the
    CPU has it natively. The bf16 maps stay within a few millimetres of the float32 ones (the
    output layer is float32), and the output says which arithmetic made them."""
    from piff.model.trained import inference_dtype, native_bf16

    terrain = georeferenced(24, seed=8)
    kw = dict(nfe=2, sampler="euler")
    fp32 = P.predict_maps(trained, terrain, RAIN, [3, 6], precision="fp32", **kw)
    bf16 = P.predict_maps(trained, terrain, RAIN, [3, 6], precision="bf16", **kw)
    auto = P.predict_maps(trained, terrain, RAIN, [3, 6], **kw)
    assert (fp32.attrs["precision"], bf16.attrs["precision"]) == ("float32", "bfloat16 autocast")
    assert auto.attrs["precision"] == ("bfloat16 autocast" if native_bf16("cpu") else "float32")
    same = bf16 if native_bf16("cpu") else fp32
    np.testing.assert_array_equal(auto["depth_mean"].values, same["depth_mean"].values)
    a, b = fp32["depth_mean"].values, bf16["depth_mean"].values
    assert not np.array_equal(a, b)  # bf16 did run
    assert np.abs(a - b).max() <= max(0.01, 0.02 * np.ptp(a))
    assert inference_dtype("fp32", "cpu") is None and inference_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(PiffInputError, match="--precision"):
        inference_dtype("fp16", "cpu")
