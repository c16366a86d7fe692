"""Malformed inputs of every ``piff`` command (issue 16, item 5), one table of cases.

Each case must give exit status 2, exactly one stderr line that names the offending file or
option, no traceback (the CLI runs in-process: an uncaught exception fails the test), no output
file and no temporary ``.<name>.*`` file beside it, and every file under the test's folder
unchanged. Cases whose target is a plain new file also run with that target already holding
bytes, which must be byte-identical afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS

from piff.cli import main
from piff.data.preprocess import SMOKE_DATASET, build_dataset_in
from piff.hydro.terrain import Terrain, synthetic_lowland, write_dem
from piff.model.store import serialize

TWD97 = CRS.from_epsg(3826).to_wkt()
ORIGIN = (168000.0, 2545000.0)
RAIN = "hour,mm_per_h\n1,40\n2,120\n3,0\n"
OUT_OPTIONS = ("--out", "--out-csv", "--out-json")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def mini_dataset(tmp_path_factory):
    """A real piff dataset of seconds: 1 DEM of 16x16 cells of 20 m, 2 storms of 2 hours, no
    coarse prior (the session's tiny_dataset takes minutes on a loaded machine)."""
    cfg = json.loads(json.dumps(SMOKE_DATASET))
    cfg["terrain"]["count"] = 1
    cfg["storms"].update(shapes=["uniform", "huff_q1"], totals_mm=[30.0], hours=2)
    cfg["simulate"]["storms_per_job"] = 2
    cfg["coarse_prior"]["enabled"] = False
    return build_dataset_in(tmp_path_factory.mktemp("bad_inputs_dataset"), cfg)


@pytest.fixture(scope="module")
def model_path(mini_dataset, tmp_path_factory):
    """A real model.pt: 2 optimiser steps of the small "demo" network on the mini dataset (~10 s)."""
    work = tmp_path_factory.mktemp("bad_inputs_model")
    hparams = {"model": "demo", "steps": 2, "batch_size": 2, "microbatch": 2, "ckpt_every": 2, "log_every": 2,
               "warmup_steps": 1, "seed": 1}
    cmd = [sys.executable, "-m", "piff.training", "--hparams", json.dumps(hparams), "--dataset", str(mini_dataset),
           "--workdir", str(work), "--out", str(work / "model.pt"), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work / "model.pt"


def georeferenced(size, seed=7, dx=20.0) -> Terrain:
    """A synthetic lowland DEM placed in TWD97 (projected, metres)."""
    t = synthetic_lowland(size, dx, seed=seed)
    return Terrain(t.elevation.copy(), dx, crs=TWD97, transform=(dx, 0.0, ORIGIN[0], 0.0, -dx, ORIGIN[1]))


def write_tif(path, z, crs=None, transform=None, nodata=None, count=1):
    z = np.asarray(z, np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=z.shape[-1], height=z.shape[-2], count=count,
                       dtype="float32", crs=crs, transform=transform or rasterio.Affine.identity(),
                       nodata=nodata) as dst:
        for band in range(1, count + 1):
            dst.write(z, band)
    return path


class _Evil:
    """Unpickling this runs ``touch <marker>``: what a crafted model.pt does with a full unpickler."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Paths:
    """The inputs of one case, made on first use in ``<tmp>/in``; outputs go to ``<tmp>/res``."""

    def __init__(self, tmp: Path, request):
        self.root = tmp
        self.inp = tmp / "in"
        self.res = tmp / "res"
        self.inp.mkdir()
        self.res.mkdir()
        self._request = request
        self.shared: list[Path] = []  # files outside tmp a case reads (hashed before and after)

    # -- inputs that are fine
    @functools.cached_property
    def dem(self) -> Path:
        z = synthetic_lowland(16, 20.0, seed=1).elevation
        np.save(self.inp / "dem.npy", z.astype(np.float32))
        return self.inp / "dem.npy"

    @functools.cached_property
    def dem_nc(self) -> Path:
        return write_dem(Terrain(synthetic_lowland(16, 20.0, seed=1).elevation, 20.0), self.inp / "dem.nc")

    @functools.cached_property
    def tif(self) -> Path:
        return write_dem(georeferenced(16), self.inp / "city.tif")

    @functools.cached_property
    def rain(self) -> Path:
        return self.text("rain.csv", RAIN)

    @functools.cached_property
    def model(self) -> Path:
        path = self._request.getfixturevalue("model_path")
        self.shared.append(path)
        return path

    @functools.cached_property
    def dataset(self) -> Path:
        path = self._request.getfixturevalue("mini_dataset")
        self.shared.append(Path(path))
        return Path(path)

    @functools.cached_property
    def dataset_copy(self) -> Path:
        return Path(shutil.copy(self.dataset, self.inp / "dataset.nc"))

    @functools.cached_property
    def marker(self) -> Path:
        return self.root / "pwned"

    # -- makers of bad inputs
    def text(self, name: str, content: str) -> Path:
        path = self.inp / name
        path.write_text(content)
        return path

    def raw(self, name: str, content: bytes) -> Path:
        path = self.inp / name
        path.write_bytes(content)
        return path

    def npy(self, name: str, array) -> Path:
        np.save(self.inp / name, array)
        return self.inp / name

    def torch_file(self, name: str, obj) -> Path:
        torch.save(obj, self.inp / name)
        return self.inp / name

    def folder(self, name: str) -> Path:
        path = self.inp / name
        path.mkdir()
        return path

    def snapshot(self) -> dict:
        """Every entry under the case's folder (contents of regular files), and the size, time and
        inode of the shared files it reads (hashing a model per case would cost more than the case)."""
        state = {}
        for path in sorted(self.root.rglob("*")):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                state[str(path)] = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                state[str(path)] = f"link to {os.readlink(path)}"
            else:
                state[str(path)] = stat.S_IFMT(st.st_mode)
        for path in self.shared:
            st = os.stat(path)
            state[str(path)] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return state


@pytest.fixture
def p(tmp_path, request):
    return Paths(tmp_path, request)


# ----------------------------------------------------------------------------- argv builders
def _argv(command: str, base: dict, over: dict, extra) -> list:
    opts = {**base, **{"--" + k.replace("_", "-"): v for k, v in over.items()}}
    argv = [command]
    for key, value in opts.items():
        if value is not None:
            argv += [key, value]
    return argv + list(extra)


def sim(p, *extra, **over):
    return _argv("simulate", {"--dem": p.dem, "--dx": 20, "--rain": p.rain, "--out": p.res / "out.nc"}, over, extra)


def spm(p, *extra, **over):
    return _argv("spm", {"--dem": p.dem, "--dx": 20, "--bins": "5:50:5", "--out": p.res / "spm.nc"}, over, extra)


def pred(p, *extra, **over):
    base = {"--model": p.model, "--dem": p.tif, "--rain": p.rain, "--out": p.res / "flood.nc"}
    return _argv("predict", base, over, ["--no-progress", "--device", "cpu", *extra])


def sample(p, *extra, **over):
    base = {"--dataset": p.dataset, "--kind": "spm", "--out": p.res / "samples.nc"}
    return _argv("sample", base, over, extra)


def evaluate(p, *extra, **over):
    base = {"--samples": p.res / "missing-samples.nc", "--dataset": p.dataset, "--out-csv": p.res / "m.csv",
            "--out-json": p.res / "m.json"}
    return _argv("evaluate", base, over, extra)


def train(p, *extra, **over):
    base = {"--hparams": json.dumps({"steps": 1}), "--dataset": p.dataset, "--workdir": p.res / "work",
            "--out": p.res / "model.pt", "--device": "cpu"}
    return _argv("train", base, over, extra)


def png(p, *extra, src=None, **over):
    return ["import-png", src or p.inp / "no-png-folder"] + _argv("", {"--out": p.res / "dataset.nc"}, over,
                                                                    extra)[1:]


def link(p, name, target, hard=False):
    path = p.res / name
    (os.link if hard else os.symlink)(target, path)
    return path


def fifo(p, name):
    path = p.res / name
    os.mkfifo(path)
    return path


def evil_pickle(p):
    return p.torch_file("evil.pt", {"x": _Evil(p.marker)})


def evil_envelope(p):
    import io

    buf = io.BytesIO()
    torch.save({"x": _Evil(p.marker)}, buf)
    payload = buf.getvalue()
    return p.torch_file("evil-envelope.pt",
                        {"format": 1, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload})


def truncated_model(p):
    data = p.model.read_bytes()
    return p.raw("truncated.pt", data[: len(data) // 2])


def bad_checksum(p):
    return p.torch_file("checksum.pt", {"format": 1, "sha256": "0" * 64, "payload": b"not the payload"})


def rain_csv(p, text, name="bad.csv"):
    return p.text(name, text)


def geographic_tif(p):
    z = synthetic_lowland(16, 20.0, seed=1).elevation
    return write_tif(p.inp / "wgs84.tif", z, crs=CRS.from_epsg(4326),
                     transform=rasterio.Affine(2e-4, 0.0, 120.2, 0.0, -2e-4, 23.0))


def nan_tif_without_nodata(p):
    z = synthetic_lowland(16, 20.0, seed=1).elevation.copy()
    z[3, 4] = np.nan
    return write_tif(p.inp / "holes.tif", z, crs=TWD97,
                     transform=rasterio.Affine(20.0, 0.0, ORIGIN[0], 0.0, -20.0, ORIGIN[1]))


def two_band_tif(p):
    z = synthetic_lowland(16, 20.0, seed=1).elevation
    return write_tif(p.inp / "rgb.tif", z, crs=TWD97, count=2,
                     transform=rasterio.Affine(20.0, 0.0, ORIGIN[0], 0.0, -20.0, ORIGIN[1]))


def plain_tif(p):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return write_tif(p.inp / "plain.tif", synthetic_lowland(16, 20.0, seed=1).elevation)


def two_var_nc(p):
    import xarray as xr

    z = np.zeros((4, 4))
    ds = xr.Dataset({"a": (("y", "x"), z), "b": (("y", "x"), z + 1)})
    ds.to_netcdf(p.inp / "two.nc")
    return p.inp / "two.nc"


def degrees_nc(p):
    import xarray as xr

    ds = xr.Dataset({"elevation": (("lat", "lon"), np.zeros((4, 4)))},
                    coords={"lat": ("lat", np.arange(4) * 1e-3, {"units": "degrees_north"}),
                            "lon": ("lon", 120 + np.arange(4) * 1e-3, {"units": "degrees_east"})})
    ds.to_netcdf(p.inp / "degrees.nc")
    return p.inp / "degrees.nc"


def nan_nc_without_fillvalue(p):
    import xarray as xr

    z = synthetic_lowland(16, 20.0, seed=1).elevation.astype(np.float64)
    z[2, 5] = np.nan
    ds = xr.Dataset({"elevation": (("y", "x"), z)},
                    coords={"y": 2545000.0 - 20.0 * np.arange(16), "x": 168000.0 + 20.0 * np.arange(16)})
    ds.to_netcdf(p.inp / "holes.nc", encoding={"elevation": {"_FillValue": None}})
    return p.inp / "holes.nc"


def piff_rain(p, text="time,inflow_01,inflow_02\n1,5,10\n2,7,0\n3,0,3\n", name="scenarios.csv"):
    return p.text(name, text)


class Case(NamedTuple):
    id: str
    argv: Callable
    expect: str  # a substring of the error line, naming the file or option
    existing: bool = True  # also run with the output target already present


C = Case
CASES = [
    # --- output targets (piff.atomic.check_output)
    C("out-is-the-dem", lambda p: sim(p, dem=p.dem_nc, dx=None, out=p.dem_nc), "is also an input", False),
    C("out-hard-link-to-dem", lambda p: sim(p, dem=p.dem_nc, dx=None, out=link(p, "o.nc", p.dem_nc, hard=True)),
      "is also an input", False),
    C("out-symlink-to-dem", lambda p: sim(p, dem=p.dem_nc, dx=None, out=link(p, "s.nc", p.dem_nc)),
      "is also an input", False),
    C("out-is-a-folder", lambda p: sim(p, out=p.folder("out.nc")), "is a folder", False),
    C("out-empty", lambda p: sim(p, out=""), "--out: is empty", False),
    C("out-blank", lambda p: sim(p, out="  "), "--out: is empty", False),
    C("out-dev-full", lambda p: sim(p, out="/dev/full"), "--out: /dev/full", False),
    C("out-fifo", lambda p: sim(p, out=fifo(p, "pipe.nc")), "special file", False),
    C("out-folder-missing", lambda p: sim(p, out=p.res / "nowhere" / "out.nc"), "does not exist", False),
    C("out-wrong-extension", lambda p: sim(p, out=p.res / "out.tif"), "--out: ", True),
    C("out-no-extension", lambda p: sim(p, out=p.res / "out"), "extension '(none)'", True),
    C("spm-out-is-the-dem", lambda p: spm(p, dem=p.dem_nc, dx=None, out=p.dem_nc), "is also an input", False),
    C("spm-out-wrong-extension", lambda p: spm(p, out=p.res / "spm.csv"), "--out: ", True),
    C("predict-out-is-the-dem", lambda p: pred(p, dem=p.tif, out=p.tif, hours="1"), "is also an input", False),
    C("predict-out-wrong-extension", lambda p: pred(p, out=p.res / "flood.png"), "--out: ", True),
    C("predict-out-is-a-folder", lambda p: pred(p, out=p.folder("flood.nc")), "is a folder", False),
    C("import-png-out-is-a-folder", lambda p: png(p, out=p.folder("d.nc")), "is a folder", False),
    C("predict-out-folder-missing", lambda p: pred(p, out=p.res / "no" / "flood.nc"), "does not exist", False),
    C("sample-out-is-the-dataset", lambda p: sample(p, dataset=p.dataset_copy, out=p.dataset_copy),
      "is also an input", False),
    C("sample-out-wrong-extension", lambda p: sample(p, out=p.res / "samples.zarr"), "--out: ", True),
    C("train-out-wrong-extension", lambda p: train(p, out=p.res / "model.nc"), "--out: ", True),
    C("evaluate-csv-wrong-extension", lambda p: evaluate(p, out_csv=p.res / "m.json"), "--out-csv: ", True),
    C("evaluate-json-wrong-extension", lambda p: evaluate(p, out_json=p.res / "m.txt"), "--out-json: ", True),
    C("train-out-is-a-folder", lambda p: train(p, out=p.folder("model.pt")), "--out: ", False),
    C("train-out-in-new-workdir", lambda p: train(p, hparams="[]", workdir=p.res / "new", out=p.res / "new" / "m.pt"),
      "--hparams: must be a JSON object", False),
    C("evaluate-json-is-a-folder", lambda p: evaluate(p, out_json=p.folder("m.json")), "--out-json: ", False),
    C("import-png-out-wrong-extension", lambda p: png(p, out=p.res / "d.h5"), "--out: ", True),
    # --- rainfall files (piff.hydro.storms.read_rainfall)
    C("rain-missing", lambda p: sim(p, rain=p.inp / "none.csv"), "none.csv: rainfall file does not exist"),
    C("rain-is-a-folder", lambda p: sim(p, rain=p.folder("rain")), "rain: is not a file"),
    C("rain-empty-file", lambda p: sim(p, rain=rain_csv(p, "")), "bad.csv: rainfall file is empty"),
    C("rain-blank-lines", lambda p: sim(p, rain=rain_csv(p, "\n\n  \n")), "bad.csv: rainfall file is empty"),
    C("rain-not-utf8", lambda p: sim(p, rain=p.raw("bin.csv", b"\xff\xfe\x00\x81hour\n")), "bin.csv: "),
    C("rain-only-hour-header", lambda p: sim(p, rain=rain_csv(p, "hour\n")), "bad.csv: header 'hour'"),
    C("rain-foo-bar-header", lambda p: sim(p, rain=rain_csv(p, "foo,bar\n1,2\n")), "bad.csv: header 'foo,bar'"),
    C("rain-header-no-rows", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n")), "bad.csv: no data rows"),
    C("rain-hours-out-of-order", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,1\n3,1\n2,1\n")),
      "bad.csv: row 3"),
    C("rain-hour-duplicated", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,1\n2,1\n2,1\n")),
      "bad.csv: row 4"),
    C("rain-hour-gap", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,1\n2,1\n4,1\n")), "bad.csv: row 4"),
    C("rain-hours-start-at-0", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n0,1\n1,1\n")), "bad.csv: row 2"),
    C("rain-hour-fraction", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,1\n1.5,1\n")), "bad.csv: row 3"),
    C("rain-hour-not-a-number", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,1\ntwo,1\n")),
      "bad.csv: row 3"),
    C("rain-negative", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2,-3\n")), "bad.csv: negative"),
    C("rain-nan", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2,nan\n")), "bad.csv: value 'nan'"),
    C("rain-inf", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,inf\n")), "bad.csv: value 'inf'"),
    C("rain-non-numeric", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2,lots\n")),
      "bad.csv: non-numeric value 'lots'"),
    C("rain-missing-value", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2,\n")),
      "bad.csv: missing value in row 3"),
    C("rain-short-row", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2\n")), "bad.csv: row 3 has 1"),
    C("rain-too-many-columns", lambda p: sim(p, rain=rain_csv(p, "1,5,7\n2,5,7\n")), "bad.csv: expected 2 columns"),
    C("rain-extra-cell", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2,5,9\n")), "bad.csv: row 3 has 3"),
    C("rain-10000-mm-per-h", lambda p: sim(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n2,10000\n")),
      "bad.csv: 10000 mm/h in row 3"),
    C("rain-headerless-1-col-negative", lambda p: sim(p, rain=rain_csv(p, "5\n-1\n")), "bad.csv: negative"),
    C("rain-headerless-2-col-gap", lambda p: sim(p, rain=rain_csv(p, "1,5\n3,5\n")), "bad.csv: row 2"),
    C("rain-scenario-without-columns", lambda p: sim(p, "--scenario", "3"),
      "rain.csv: scenario 3 requested but the file has no inflow_<id> columns"),
    C("piff-rain-needs-scenario", lambda p: sim(p, rain=piff_rain(p)), "scenarios.csv: has 2 scenarios"),
    C("piff-rain-unknown-scenario", lambda p: sim(p, "--scenario", "9", rain=piff_rain(p)),
      "scenarios.csv: no scenario 9"),
    C("piff-rain-empty-member", lambda p: sim(p, "--scenario", "1", rain=piff_rain(p, "time,inflow_01\n1,\n2,3\n")),
      "scenarios.csv: missing value in row 2, column inflow_01"),
    C("piff-rain-time-starts-at-2", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01\n2,1\n3,1\n")),
      "scenarios.csv: row 2"),
    C("piff-rain-time-repeats", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01\n0,1\n1,1\n1,1\n")),
      "scenarios.csv: row 4"),
    C("piff-rain-duplicate-id", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01,inflow_1\n1,1,1\n")),
      "scenarios.csv: a scenario id appears in two"),
    C("piff-rain-foreign-column", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01,note\n1,1,x\n")),
      "scenarios.csv: header 'time,inflow_01,note'"),
    C("piff-rain-no-rows", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01\n")), "scenarios.csv: no data rows"),
    C("piff-rain-too-many-cells", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01\n1,1,4\n")),
      "scenarios.csv: row 2 has 3 columns"),
    C("piff-rain-10000-mm-per-h", lambda p: sim(p, rain=piff_rain(p, "time,inflow_01\n1,10000\n")),
      "scenarios.csv: 10000 mm/h"),
    C("predict-rain-too-short", lambda p: pred(p, hours="1-24"), "rain.csv: has 3 hourly values but hour 24"),
    C("predict-rain-bad", lambda p: pred(p, rain=rain_csv(p, "hour,mm_per_h\n1,5\n1,5\n")), "bad.csv: row 3"),
    # --- options
    C("simulate-dx-0", lambda p: sim(p, dx=0), "argument --dx: must be a finite number > 0"),
    C("simulate-dx-negative", lambda p: sim(p, dx=-5), "argument --dx: must be a finite number > 0"),
    C("simulate-dx-nan", lambda p: sim(p, dx="nan"), "argument --dx: must be a finite number > 0"),
    C("simulate-dx-inf", lambda p: sim(p, dx="inf"), "argument --dx: must be a finite number > 0"),
    C("simulate-dx-text", lambda p: sim(p, dx="twenty"), "argument --dx: 'twenty' is not a number"),
    C("simulate-manning-0", lambda p: sim(p, "--manning", "0"), "argument --manning"),
    C("simulate-manning-negative", lambda p: sim(p, "--manning", "-1"), "argument --manning"),
    C("simulate-hours-0", lambda p: sim(p, "--hours", "0"), "argument --hours: must be at least 1"),
    C("simulate-hours-text", lambda p: sim(p, "--hours", "six"), "argument --hours"),
    C("simulate-dtype-unknown", lambda p: sim(p, "--dtype", "float16"), "argument --dtype"),
    C("simulate-missing-dem-option", lambda p: sim(p, dem=None), "--dem"),
    C("simulate-unknown-option", lambda p: sim(p, "--frobnicate", "1"), "--frobnicate"),
    C("simulate-boundary-unknown-kind", lambda p: sim(p, boundary="left=lake"), "--boundary"),
    C("simulate-boundary-unknown-edge", lambda p: sim(p, boundary="middle=sea:0"), "--boundary"),
    C("simulate-boundary-bad-level", lambda p: sim(p, boundary="left=sea:high"), "--boundary"),
    C("simulate-boundary-edge-twice", lambda p: sim(p, boundary="left=free,left=sea:0"), "--boundary"),
    C("spm-bins-negative", lambda p: spm(p, bins="-5:10:5"), "--bins: '-5:10:5'"),
    C("spm-bins-reversed", lambda p: spm(p, bins="10:5:5"), "--bins: '10:5:5'"),
    C("spm-bins-zero-step", lambda p: spm(p, bins="5:50:0"), "--bins: '5:50:0'"),
    C("spm-bins-text", lambda p: spm(p, bins="a:b"), "--bins: 'a:b'"),
    C("spm-bins-too-many", lambda p: spm(p, bins="0.001:100:0.001"), "--bins: '0.001:100:0.001'"),
    C("spm-boundary-bad", lambda p: spm(p, boundary="top=wall"), "--boundary"),
    C("predict-threads-0", lambda p: pred(p, "--threads", "0"), "argument --threads: must be at least 1"),
    C("predict-nfe-0", lambda p: pred(p, "--nfe", "0"), "--nfe: must be at least 1"),
    C("predict-members-0", lambda p: pred(p, "--members", "0"), "--members: must be at least 1"),
    C("predict-batch-size-0", lambda p: pred(p, "--batch-size", "0"), "--batch-size: must be at least 1"),
    C("predict-coarse-factor-0", lambda p: pred(p, "--coarse-factor", "0"), "--coarse-factor: must be at least 1"),
    C("predict-overlap-1.5", lambda p: pred(p, "--overlap", "1.5"), "--overlap: must be in [0, 1)"),
    C("predict-overlap-negative", lambda p: pred(p, "--overlap", "-0.1"), "--overlap: must be in [0, 1)"),
    C("predict-hours-0", lambda p: pred(p, hours="0"), "--hours: hours count from 1"),
    C("predict-hours-reversed", lambda p: pred(p, hours="5-2"), "--hours: expected hours like"),
    C("predict-hours-text", lambda p: pred(p, hours="a"), "--hours: expected hours like"),
    C("predict-sampler-unknown", lambda p: pred(p, "--sampler", "rk4"), "argument --sampler"),
    C("predict-device-unknown", lambda p: pred(p, "--device", "nonsense"), "argument --device: 'nonsense'"),
    C("predict-device-missing-gpu", lambda p: pred(p, "--device", "cuda:99"), "argument --device: 'cuda:99'"),
    C("predict-boundary-bad", lambda p: pred(p, boundary="left=sea:x"), "--boundary"),
    C("predict-geotiff-many-hours", lambda p: pred(p, out=p.res / "flood.tif"), "flood.tif: a GeoTIFF holds one map"),
    C("sample-batch-size-0", lambda p: sample(p, batch_size=0), "argument --batch-size: must be at least 1"),
    C("sample-kind-unknown", lambda p: sample(p, kind="oracle"), "argument --kind"),
    C("sample-options-bad-json", lambda p: sample(p, options="{nfe: [1]"), "--options: not valid JSON"),
    C("sample-options-not-an-object", lambda p: sample(p, options="[1, 2]"), "--options: "),
    C("sample-options-unknown-key", lambda p: sample(p, options='{"nfes": [1]}'), "--options: unknown key(s) nfes"),
    C("sample-options-nfe-text", lambda p: sample(p, options='{"nfe": "x"}'), "--options: nfe must be"),
    C("sample-options-nfe-not-a-list", lambda p: sample(p, options='{"nfe": 5}'), "--options: nfe must be"),
    C("sample-options-nfe-0", lambda p: sample(p, options='{"nfe": [1, 0]}'), "--options: nfe must be"),
    C("sample-options-sampler-unknown", lambda p: sample(p, options='{"sampler": "rk4"}'), "--options: sampler must"),
    C("sample-options-members-text", lambda p: sample(p, options='{"members": "many"}'), "--options: members must"),
    C("sample-options-seed-text", lambda p: sample(p, options='{"seed": "x"}'), "--options: seed must"),
    C("sample-options-hours-text", lambda p: sample(p, options='{"hours": "all"}'), "--options: hours must"),
    C("sample-options-hours-beyond-storms", lambda p: sample(p, options='{"hours": [99]}'),
      "dataset.nc: requested hours [99]"),
    C("sample-device-unknown", lambda p: sample(p, device="nonsense"), "argument --device: 'nonsense'"),
    C("sample-device-missing-gpu", lambda p: sample(p, device="cuda:99"), "argument --device: 'cuda:99'"),
    C("sample-needs-model", lambda p: sample(p, kind="piff"), "--model: kind piff needs a trained model file"),
    C("train-hparams-bad-json", lambda p: train(p, hparams="{steps: 1}"), "--hparams: not valid JSON"),
    C("train-hparams-unknown-key", lambda p: train(p, hparams='{"stepz": 1}'),
      "--hparams: unknown training option(s): stepz"),
    C("train-hparams-not-an-object", lambda p: train(p, hparams="[1]"), "--hparams: "),
    C("train-hparams-unknown-type", lambda p: train(p, hparams='{"type": "magic"}'), "--hparams: type = 'magic'"),
    C("train-hparams-wrong-type", lambda p: train(p, hparams='{"steps": "many"}'),
      "--hparams: steps must be an integer, got 'many'"),
    C("train-hparams-bool-for-int", lambda p: train(p, hparams='{"batch_size": true}'),
      "--hparams: batch_size must be an integer, got True"),
    C("train-hparams-float-for-int", lambda p: train(p, hparams='{"steps": 2.5}'),
      "--hparams: steps must be an integer"),
    C("train-hparams-lr-text", lambda p: train(p, hparams='{"lr": "2e-4"}'), "--hparams: lr must be a number"),
    C("train-hparams-batch-size-0", lambda p: train(p, hparams='{"batch_size": 0}'),
      "--hparams: batch_size must be at least 1"),
    C("train-hparams-nfe-0", lambda p: train(p, hparams='{"nfe": [1, 0]}'), "--hparams: nfe must be"),
    C("train-hparams-model-unknown", lambda p: train(p, hparams='{"model": "huge", "batch_size": 2, "microbatch": 2}'),
      "--hparams: model = 'huge'"),
    C("train-log-every-0", lambda p: train(p, "--log-every", "0"), "argument --log-every: must be at least 1"),
    C("train-batch-larger-than-dataset", lambda p: train(p, hparams='{"steps": 1, "batch_size": 16}'),
      "batch_size 16 exceeds the"),
    C("train-device-unknown", lambda p: train(p, device="tpu"), "argument --device"),
    C("import-png-ids-not-integers", lambda p: png(p, "--test-ids", "a,b", src=p.folder("png")),
      "--test-ids: expected comma-separated integer"),
    C("unknown-command", lambda p: ["frobnicate", "--out", p.res / "x.nc"], "frobnicate"),
    # --- DEMs (piff.hydro.terrain.read_dem)
    C("dem-missing", lambda p: sim(p, dem=p.inp / "none.npy"), "none.npy: DEM file does not exist"),
    C("dem-text-named-tif", lambda p: sim(p, dem=p.text("dem.tif", "not a raster\n"), dx=None),
      "dem.tif: not a readable raster"),
    C("dem-npy-without-dx", lambda p: sim(p, dx=None), "dem.npy: a .npy DEM carries no cell size"),
    C("dem-npy-1d", lambda p: sim(p, dem=p.npy("line.npy", np.arange(16.0))), "line.npy: elevation must be a 2-D"),
    C("dem-npy-3d", lambda p: sim(p, dem=p.npy("cube.npy", np.zeros((2, 4, 4)))), "cube.npy: elevation must be a 2-D"),
    C("dem-npy-one-row", lambda p: sim(p, dem=p.npy("row.npy", np.zeros((1, 8)))), "row.npy: elevation raster"),
    C("dem-npy-all-nan", lambda p: sim(p, dem=p.npy("nan.npy", np.full((8, 8), np.nan))),
      "nan.npy: every cell is nodata"),
    C("dem-npy-inf", lambda p: sim(p, dem=p.npy("inf.npy", np.where(np.eye(8) > 0, np.inf, 1.0))),
      "inf.npy: contains infinite values"),
    C("dem-npy-strings", lambda p: sim(p, dem=p.npy("str.npy", np.array([["a", "b"], ["c", "d"]]))),
      "str.npy: elevation must be numeric"),
    C("dem-npy-garbage", lambda p: sim(p, dem=p.raw("junk.npy", b"\x93NUMPY garbage")), "junk.npy: not a readable"),
    C("dem-npy-empty-file", lambda p: sim(p, dem=p.raw("empty.npy", b"")), "empty.npy: not a readable"),
    C("dem-npy-pickled-object", lambda p: sim(p, dem=p.npy("obj.npy", np.array([{"a": 1}, None], dtype=object))),
      "obj.npy: not a readable"),
    C("dem-is-a-folder", lambda p: sim(p, dem=p.folder("dem.tif"), dx=None), "dem.tif: "),
    C("dem-tif-nan-without-nodata", lambda p: spm(p, dem=nan_tif_without_nodata(p), dx=None),
      "holes.tif: 1 cells are NaN or infinite"),
    C("dem-tif-two-bands", lambda p: spm(p, dem=two_band_tif(p), dx=None), "rgb.tif: has 2 bands"),
    C("dem-tif-no-georeferencing", lambda p: spm(p, dem=plain_tif(p), dx=None), "plain.tif: has no georeferencing"),
    C("dem-nc-not-netcdf", lambda p: spm(p, dem=p.text("dem.nc", "hello\n"), dx=None), "dem.nc: not a readable netCDF"),
    C("dem-nc-nan-without-fillvalue", lambda p: spm(p, dem=nan_nc_without_fillvalue(p), dx=None),
      "holes.nc: 1 cells are NaN or infinite (first at row 2, column 5)"),
    C("dem-nc-two-variables", lambda p: spm(p, dem=two_var_nc(p), dx=None), "two.nc: several 2-D variables"),
    C("dem-nc-in-degrees", lambda p: spm(p, dem=degrees_nc(p), dx=None), "degrees.nc: coordinates are in degrees"),
    C("predict-dem-geographic", lambda p: pred(p, dem=geographic_tif(p)), "wgs84.tif: has a geographic CRS"),
    C("predict-dem-geographic-with-dx", lambda p: pred(p, "--dx", "20", dem=geographic_tif(p)),
      "wgs84.tif: DEM is in a geographic CRS"),
    C("predict-dem-other-cell-size", lambda p: pred(p, dem=write_dem(georeferenced(32, dx=10.0), p.inp / "f.tif")),
      "f.tif: cell size 10 m differs from the model's training cell size 20 m"),
    C("predict-dem-missing", lambda p: pred(p, dem=p.inp / "nowhere.tif"), "nowhere.tif: DEM file does not exist"),
    # --- model files (piff.model.store.load_checkpoint)
    C("model-missing", lambda p: pred(p, model=p.inp / "none.pt"), "none.pt: model file does not exist"),
    C("model-pickle-runs-code", lambda p: pred(p, model=evil_pickle(p)), "evil.pt: refused"),
    C("model-envelope-runs-code", lambda p: pred(p, model=evil_envelope(p)), "evil-envelope.pt: refused"),
    C("model-truncated", lambda p: pred(p, model=truncated_model(p)),
      "truncated.pt: damaged or not a piff checkpoint"),
    C("model-random-bytes", lambda p: pred(p, model=p.raw("random.pt", np.random.default_rng(0).bytes(4096))),
      "random.pt: damaged or not a piff checkpoint"),
    C("model-empty-file", lambda p: pred(p, model=p.raw("empty.pt", b"")),
      "empty.pt: damaged or not a piff checkpoint"),
    C("model-torch-not-envelope", lambda p: pred(p, model=p.torch_file("plain.pt", {"w": torch.zeros(3)})),
      "plain.pt: damaged or not a piff checkpoint"),
    C("model-checksum-mismatch", lambda p: pred(p, model=bad_checksum(p)), "checksum.pt: damaged or not a piff"),
    C("model-envelope-not-a-model", lambda p: pred(p, model=p.raw("state.pt", serialize({"w": torch.zeros(3)}))),
      "state.pt: not a piff model file"),
    C("model-is-a-folder", lambda p: pred(p, model=p.folder("model.pt")), "model.pt: "),
    C("sample-model-damaged", lambda p: sample(p, kind="piff", model=p.raw("m.pt", b"PK\x03\x04junk")),
      "m.pt: damaged or not a piff checkpoint"),
    # --- datasets and samples files
    C("sample-dataset-missing", lambda p: sample(p, dataset=p.inp / "none.nc"), "none.nc: dataset file does not exist"),
    C("sample-dataset-not-netcdf", lambda p: sample(p, dataset=p.text("d.nc", "text\n")),
      "d.nc: not a readable netCDF"),
    C("sample-dataset-not-piff", lambda p: sample(p, dataset=p.dem_nc), "dem.nc: not a piff dataset"),
    C("evaluate-samples-missing", lambda p: evaluate(p, samples=p.inp / "none.nc"), "none.nc: "),
    C("evaluate-samples-not-netcdf", lambda p: evaluate(p, samples=p.text("s.nc", "text\n")), "s.nc: "),
    C("evaluate-samples-not-samples", lambda p: evaluate(p, samples=p.dem_nc), "dem.nc: "),
    C("evaluate-dataset-missing", lambda p: evaluate(p, samples=p.dem_nc, dataset=p.inp / "none.nc"), "none.nc: "),
    C("train-dataset-missing", lambda p: train(p, dataset=p.inp / "none.nc"), "none.nc: "),
    C("train-dataset-not-netcdf", lambda p: train(p, dataset=p.text("d.nc", "text\n")), "d.nc: "),
    C("import-png-src-missing", lambda p: png(p), "no-png-folder: PNG dataset folder does not exist"),
    C("import-png-src-is-a-file", lambda p: png(p, src=p.text("png.txt", "x")), "png.txt: PNG dataset folder"),
    C("import-png-src-empty", lambda p: png(p, src=p.folder("png")), "png: "),
]
assert len({c.id for c in CASES}) == len(CASES)


def out_targets(argv) -> list[Path]:
    return [Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in OUT_OPTIONS and argv[i + 1].strip()]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def check_failure(code, out, err, expect):
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert lines[0].startswith("piff"), err
    assert expect in lines[0], err


def _param(case, existing):
    return pytest.param(case, existing, id=case.id + ("-existing" if existing else ""))


PARAMS = [_param(c, False) for c in CASES] + [_param(c, True) for c in CASES if c.existing]


@pytest.mark.parametrize("case, existing", PARAMS)
def test_bad_input(case, existing, p, capsys):
    argv = [os.fspath(a) if isinstance(a, Path) else str(a) for a in case.argv(p)]
    targets = out_targets(argv)
    fresh = [t for t in targets if t.is_relative_to(p.root) and not os.path.lexists(t)]
    if existing:
        assert fresh, "the existing-output variant needs a new output file"
        for t in fresh:
            t.write_bytes(b"an earlier output, to be kept: " + t.name.encode())
    before = p.snapshot()
    code, out, err = run_cli(argv, capsys)
    check_failure(code, out, err, case.expect)
    assert not out, out
    after = p.snapshot()
    assert after == before, "files changed: " + ", ".join(sorted(set(after) ^ set(before)) or
                                                          [k for k in after if after[k] != before.get(k)])
    for t in fresh:
        assert os.path.lexists(t) == existing, t
    for t in targets:
        if t.parent.is_dir():
            assert not [x for x in os.listdir(t.parent) if x.startswith(f".{t.name}.")], os.listdir(t.parent)
    assert not p.marker.exists(), "the crafted model file ran code"


def test_model_presets_are_named_in_choices():
    """The torch-free experiment check refuses an unknown network by piff.choices' list."""
    from piff.choices import MODEL_PRESETS
    from piff.model.config import PRESETS

    assert sorted(MODEL_PRESETS) == sorted(PRESETS)


def test_table_has_enough_cases():
    assert len(CASES) >= 75 and len(PARAMS) > len(CASES)


# ----------------------------------------------------------------------------- rain beyond the model's range
def test_predict_warns_beyond_the_trained_rain_range(p, capsys):
    """Not an error (issue 16, item 3): one warning line naming the hour and the model's range,
    then the maps as usual; no warning for rain inside the range."""
    from piff.model.trained import load_trained

    limit = load_trained(p.model).rain_max_mm_per_h
    assert limit is not None and 1.0 < limit < 120.0
    code, out, err = run_cli([str(a) for a in pred(p, hours="1-2")], capsys)  # RAIN: 40 then 120 mm/h
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("piff: warning: ")]
    assert len(warned) == 1, err
    assert f"hour 2 has 120 mm/h, beyond the 0-{limit:g} mm/h range" in warned[0], err
    assert (p.res / "flood.nc").exists()

    gentle = rain_csv(p, f"hour,mm_per_h\n1,{limit / 2:g}\n2,{limit:g}\n", name="gentle.csv")
    code, out, err = run_cli([str(a) for a in pred(p, hours="1-2", rain=gentle, out=p.res / "gentle.nc")], capsys)
    assert code == 0, err
    assert "beyond the" not in err, err


# ----------------------------------------------------------------------------- unwritable folder
@functools.cache
def _unprivileged_python() -> tuple[list[str], list[str]] | None:
    """(command prefix, python args) that run piff as user nobody, or None. The venv's python may
    live under root's home (mode 700); then the system python of the same version is used with
    the venv's site-packages."""
    if shutil.which("runuser") is None:
        return None
    site = sysconfig.get_paths()["purelib"]
    boot = f"import site, sys; site.addsitedir({site!r}); "
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, shutil.which(version, path="/usr/bin:/usr/local/bin")):
        if not python:
            continue
        cmd = ["runuser", "-u", "nobody", "--", python]
        try:
            probe = subprocess.run(cmd + ["-c", boot + "import numpy, piff.cli"], capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cmd, ["-c", boot + "from piff.cli import main; sys.exit(main(sys.argv[1:]))"]
    return None


@pytest.mark.parametrize("command, existing", [("simulate", False), ("spm", True)])
def test_unwritable_folder(command, existing, capsys):
    """As root, the CLI runs as user nobody (root may write anywhere); otherwise in-process."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        dem, rain, res = folder / "dem.npy", folder / "rain.csv", folder / "res"
        np.save(dem, synthetic_lowland(16, 20.0, seed=1).elevation)
        rain.write_text(RAIN)
        res.mkdir()
        old = b"an earlier output, to be kept"
        if existing:
            (res / "out.nc").write_bytes(old)
        res.chmod(0o555)
        for f in (dem, rain):
            f.chmod(0o644)
        out = res / "out.nc"
        argv = [command, "--dem", str(dem), "--dx", "20", "--out", str(out)]
        argv += ["--rain", str(rain)] if command == "simulate" else []
        if os.geteuid() == 0:
            runner = _unprivileged_python()
            if runner is None:
                pytest.skip("running as root and no python can be run as user nobody (runuser)")
            cmd, boot = runner
            proc = subprocess.run(cmd + boot + argv, capture_output=True, text=True, timeout=300, cwd=folder,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            code, stdout, err = proc.returncode, proc.stdout, proc.stderr
        else:
            code, stdout, err = run_cli(argv, capsys)
        check_failure(code, stdout, err, f"--out: {out}: folder '{res}' is not writable")
        assert not stdout, stdout
        assert os.listdir(res) == (["out.nc"] if existing else [])
        assert not existing or out.read_bytes() == old
    finally:
        if (folder / "res").exists():
            (folder / "res").chmod(0o755)
        shutil.rmtree(folder)
