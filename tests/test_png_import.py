"""The PIFF PNG importer: round trip of a fabricated PIFF-layout folder, the CLI, and errors."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from piff.cli import main
from piff.data import format as fmt
from piff.data.png_import import import_png_folder
from piff.errors import PiffInputError

N = 16
HOURS = 24
FULL_SCALE = 4.0
IDS = (1, 7, 105)  # two- and three-digit scenario ids
DEM_RANGE = {"A": (-2.5, 37.0), "B": (3.0, 11.0), "dem": (0.0, 50.0)}


def hyetographs() -> dict[int, np.ndarray]:
    """Hourly mm/h: a uniform storm, a triangular design storm and a late burst."""
    tri = np.interp(np.arange(HOURS), [0, 11, 23], [1.0, 30.0, 1.0])
    late = np.r_[np.zeros(12), np.full(6, 12.5), [40.0, 20.0], np.zeros(4)]
    return {1: np.full(HOURS, 5.0), 7: np.round(tri, 2), 105: late}


def write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def write_dem(path, name, rng, bits):
    """A DEM PNG; returns the elevation it encodes (metres)."""
    pmax = 255 if bits == 8 else 65535
    p = rng.integers(0, pmax + 1, (N, N)).astype(np.uint8 if bits == 8 else np.uint16)
    p[0, 0], p[-1, -1] = 0, pmax  # the stats' min and max occur
    write_png(path, p)
    lo, hi = DEM_RANGE[name]
    return lo + p / pmax * (hi - lo)


def depth_pixels(depth):
    """8-bit inverted encoding: 255 = dry, 0 = full scale."""
    return np.round((1 - depth / FULL_SCALE) * 255).astype(np.uint8)


def write_rain_csv(path, first_time):
    rain = hyetographs()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time"] + [f"inflow_{i:02d}" for i in IDS])
        if first_time == 0:  # a dry hour-0 row, then hours 1..24
            w.writerow([0] + [0.0] * len(IDS))
        for h in range(HOURS):
            w.writerow([h + 1] + [rain[i][h] for i in IDS])


def make_multi(root, rng):
    """Two DEMs (16-bit A, 8-bit B) in dem_png/, depth maps in depth/; B has no hour-0 maps."""
    elevation = {"A": write_dem(root / "dem_png/A.png", "A", rng, 16),
                 "B": write_dem(root / "dem_png/B.png", "B", rng, 8)}
    with open(root / "dem_png/elevation_stats.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Filename", "Min Elevation", "Max Elevation"])
        for name in ("A", "B"):
            w.writerow([f"{name}.png", *DEM_RANGE[name]])
    write_rain_csv(root / "scenario_rainfall.csv", first_time=1)
    depth = rng.uniform(0, 3.9, (2, len(IDS), HOURS + 1, N, N))
    depth[:, :, 0] = 0
    depth[depth < 0.3] = 0  # dry cells
    for d, dem in enumerate(("A", "B")):
        for s, sid in enumerate(IDS):
            for h in range(0 if dem == "A" else 1, HOURS + 1):
                write_png(root / f"depth/{dem}_RF{sid:02d}_d_{h:03d}_00.png", depth_pixels(depth[d, s, h]))
    return {"elevation": elevation, "depth": depth}


def make_single(root, rng):
    """One DEM in the root, RGBA depth maps in Depth/RF<id>/, velocity in Vx/ and Vy/, SPM PNGs,
    and a rainfall csv whose time column starts with a dry hour-0 row."""
    elevation = write_dem(root / "dem.png", "dem", rng, 8)
    (root / "elevation_stats.csv").write_text("Filename,Min Elevation,Max Elevation\ndem,0,50\n")
    write_rain_csv(root / "scenario_rainfall.csv", first_time=0)
    depth = rng.uniform(0, 2.0, (len(IDS), HOURS + 1, N, N))
    vel = {v: rng.integers(0, 256, (len(IDS), HOURS + 1, N, N)).astype(np.uint8) for v in ("vx", "vy")}
    for s, sid in enumerate(IDS):
        for h in range(HOURS + 1):
            p = depth_pixels(depth[s, h])
            rgba = np.stack([p, p, p, np.full_like(p, 255)], axis=-1)
            write_png(root / f"Depth/RF{sid:02d}/RF{sid:02d}_d_{h:03d}_00.png", rgba)
            for v in ("vx", "vy"):
                write_png(root / f"{v.capitalize()}/RF{sid:02d}_{v}_{h:03d}_00.png", vel[v][s, h])
    spm = rng.uniform(0, 1.0, (3, N, N))
    for b, mm in enumerate((5, 10, 15)):
        write_png(root / f"spm/SPM_{mm}.png", depth_pixels(spm[b]))
    return {"elevation": elevation, "depth": depth, "vel": vel, "spm": spm}


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    return root, make_multi(root, np.random.default_rng(0))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    return root, make_single(root, np.random.default_rng(1))


@pytest.fixture
def broken(multi, tmp_path):
    """A fresh copy of the multi-DEM folder for a test to damage."""
    root = tmp_path / "broken"
    shutil.copytree(multi[0], root)
    return root


def import_error(root, **kwargs) -> str:
    with pytest.raises(PiffInputError) as err:
        import_png_folder(root, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- round trip
def test_multi_dem_round_trip(multi):
    root, truth = multi
    ds = import_png_folder(root, depth_full_scale_m=FULL_SCALE, dx=25.0, test_ids=[7], val_ids=[105])
    assert dict(ds.sizes) == {**dict(ds.sizes), "dem": 2, "storm": 3, "time": HOURS + 1, "y": N, "x": N}
    assert ds["depth"].dims == ("dem", "storm", "time", "y", "x")
    assert ds["spm"].dims == ("dem", "rain_bin", "y", "x")
    assert ds["storm"].values.tolist() == list(IDS)
    assert ds["dem_name"].values.astype(str).tolist() == ["A", "B"]
    units = {v: ds[v].attrs.get("units") for v in ("elevation", "depth", "rainfall", "spm", "storm_total")}
    assert units == {"elevation": "m", "depth": "m", "rainfall": "mm h-1", "spm": "m", "storm_total": "mm"}
    for d, name in enumerate(("A", "B")):
        lo, hi = DEM_RANGE[name]
        step = (hi - lo) / (65535 if name == "A" else 255)
        np.testing.assert_allclose(ds["elevation"].values[d], truth["elevation"][name], atol=max(step, 1e-4))
    # depth within half a quantisation step; B's missing hour-0 maps are dry
    assert np.abs(ds["depth"].values - truth["depth"]).max() <= FULL_SCALE / 255 / 2 + 1e-6
    assert not ds["depth"].values[1, :, 0].any()
    rain = ds["rainfall"].values
    assert (rain[:, 0] == 0).all()
    for s, sid in enumerate(IDS):
        np.testing.assert_allclose(rain[s, 1:], hyetographs()[sid], rtol=1e-6)
    np.testing.assert_allclose(ds["storm_total"].values, rain.sum(axis=1), rtol=1e-6)
    assert ds["split"].values.astype(str).tolist() == ["train", "test", "val"]
    assert ds["storm_group"].values.astype(str).tolist() == ["uniform", "design", "design"]
    assert set(ds["storm_shape"].values.astype(str)) == {"imported"}
    # SPM computed by fill and spill: one map per bin, non-negative, more rain never less water
    spm = ds["spm"].values
    assert spm.shape[:2] == (2, ds.sizes["rain_bin"]) and spm.min() >= 0
    assert np.all(np.diff(spm.sum(axis=(2, 3)), axis=1) >= -1e-4)
    assert "flux_x" not in ds and "vx" not in ds
    attrs = ds.attrs
    assert attrs["cell_size_m"] == 25.0 and attrs["depth_full_scale_m"] == FULL_SCALE
    assert attrs["quantisation_step_m"] == pytest.approx(FULL_SCALE / 255)
    assert attrs["source_folder"] == str(root.resolve())
    assert "ending at k" in attrs["rainfall_time_rule"] and "physics" in attrs["physics_note"]
    assert attrs["spm_source"].startswith("fill_and_spill")


def test_single_dem_rgba_velocity_spm_pngs_and_hour0_row(single):
    root, truth = single
    ds = import_png_folder(root, velocity_full_scale=2.0, hours=12)
    assert ds.sizes["dem"] == 1 and ds.sizes["time"] == 13  # hours=12 cuts the event
    assert ds["dem_name"].values.astype(str).tolist() == ["dem"]
    np.testing.assert_allclose(ds["elevation"].values[0], truth["elevation"], atol=1e-4)
    assert np.abs(ds["depth"].values[0] - truth["depth"][:, :13]).max() <= FULL_SCALE / 255 / 2 + 1e-6
    # the csv's dry time-0 row is the stored rainfall[:, 0]; its time-k row is hour k
    for s, sid in enumerate(IDS):
        np.testing.assert_allclose(ds["rainfall"].values[s, 1:], hyetographs()[sid][:12], rtol=1e-6)
    for v in ("vx", "vy"):
        expected = (2 * truth["vel"][v][:, 1:13].astype(float) / 255 - 1) * 2.0
        np.testing.assert_allclose(ds[v].values[0, :, 1:], expected, atol=1e-5)
        assert not ds[v].values[0, :, 0].any() and ds[v].attrs["units"] == "m s-1"
    assert ds["rain_bin"].values.tolist() == [5.0, 10.0, 15.0] and ds.attrs["spm_source"] == "png"
    assert np.abs(ds["spm"].values[0] - truth["spm"]).max() <= FULL_SCALE / 255 / 2 + 1e-6
    assert set(ds["split"].values.astype(str)) == {"train"}


def test_cli_writes_a_dataset_open_dataset_accepts(multi, tmp_path, capsys):
    root, truth = multi
    out = tmp_path / "out/dataset.nc"
    rc = main(["import-png", str(root), "--out", str(out), "--depth-full-scale", "4", "--dx", "20",
               "--test-ids", "7", "--val-ids", "105", "--outlets", "left,bottom"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "2 DEM(s), 3 storms (train 1, val 1, test 1)" in line
    ds = fmt.open_dataset(out, load=True)
    assert ds.attrs["cell_size_m"] == 20.0 and "left=free" in ds.attrs["spm_source"]
    assert fmt.storm_ids_in_split(ds, "test").tolist() == [7]
    assert np.abs(ds["depth"].values - truth["depth"]).max() <= FULL_SCALE / 255 / 2 + 1e-6
    assert not list(out.parent.glob(".*.tmp"))


def test_cli_failure_exits_2_and_writes_nothing(multi, tmp_path, capsys):
    out = tmp_path / "dataset.nc"
    assert main(["import-png", str(multi[0]), "--out", str(out), "--test-ids", "8"]) == 2
    assert "--test-ids" in capsys.readouterr().err
    assert main(["import-png", str(multi[0]), "--out", str(out), "--val-ids", "x"]) == 2
    assert not out.exists()


def test_layout_variations_give_the_same_data(broken, multi):
    """PIFF's own multi-DEM naming (DEPTH_png/<dem>/RF<id>/<dem>_RF<id>_<hhh>.png), maps whose DEM
    is only their folder's name, and a csv whose time column labels the hour's start (0..23)."""
    for path in sorted((broken / "depth").glob("*.png")):
        dem, rf, _, hour, _ = path.stem.split("_")
        new = f"{dem}_{rf}_{hour}.png" if dem == "B" else f"{rf}_d_{hour}_00.png"
        target = broken / "DEPTH_png" / dem / rf / new
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    rain_csv = broken / "scenario_rainfall.csv"
    lines = rain_csv.read_text().splitlines()
    rain_csv.write_text("\n".join([lines[0]] + [f"{h}," + line.split(",", 1)[1] for h, line in enumerate(lines[1:])]))
    ds = import_png_folder(broken)
    assert "starting at k" in ds.attrs["rainfall_time_rule"]
    assert np.abs(ds["depth"].values - multi[1]["depth"]).max() <= FULL_SCALE / 255 / 2 + 1e-6
    for s, sid in enumerate(IDS):
        np.testing.assert_allclose(ds["rainfall"].values[s, 1:], hyetographs()[sid], rtol=1e-6)


# ----------------------------------------------------------------------------- errors
def test_missing_hour_names_the_file(broken):
    (broken / "depth/A_RF07_d_013_00.png").unlink()
    message = import_error(broken)
    assert "missing hourly maps" in message and "depth/A_RF07_d_013_00.png" in message


def test_many_missing_files_are_listed_up_to_ten(broken):
    for h in range(2, HOURS + 1):
        (broken / f"depth/B_RF105_d_{h:03d}_00.png").unlink()
    message = import_error(broken)
    assert "depth/B_RF105_d_002_00.png" in message and "... and 13 more" in message


def test_size_mismatch_names_the_file(broken):
    write_png(broken / "depth/B_RF105_d_005_00.png", np.full((15, 16), 255, np.uint8))
    message = import_error(broken)
    assert "differs from the DEM (16x16)" in message and "depth/B_RF105_d_005_00.png (15x16)" in message


def test_unknown_scenario_id_names_the_file(broken):
    shutil.copy(broken / "depth/A_RF07_d_001_00.png", broken / "depth/A_RF09_d_001_00.png")
    message = import_error(broken)
    assert "scenario ids 9" in message and "depth/A_RF09_d_001_00.png" in message


def test_dem_not_in_stats_and_stats_dem_missing(broken):
    stats = broken / "dem_png/elevation_stats.csv"
    stats.write_text("Filename,Min Elevation,Max Elevation\nA.png,-2.5,37\nC.png,0,1\n")
    message = import_error(broken)
    assert "listed but not found: dem_png/C.png" in message and "not listed: dem_png/B.png" in message


def test_unreadable_png_and_missing_csv(broken):
    (broken / "depth/A_RF01_d_003_00.png").write_bytes(b"not a png")
    assert "unreadable PNGs: depth/A_RF01_d_003_00.png" in import_error(broken)
    (broken / "scenario_rainfall.csv").unlink()
    assert "scenario_rainfall.csv: missing" in import_error(broken)


def test_maps_of_an_unlisted_dem(broken):
    shutil.copy(broken / "depth/A_RF07_d_001_00.png", broken / "depth/Z_RF07_d_001_00.png")
    assert "depth/Z_RF07_d_001_00.png" in import_error(broken)
