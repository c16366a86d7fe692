"""Grid-symmetry augmentation (piff.data.symmetry): the elements each boundary layout allows,
their action checked against the solver itself, and the training run that uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from piff.data.symmetry import ALL, IDENTITY, GridSymmetry, boundary_symmetries, transform_fluxes, transform_map
from piff.hydro import solver
from piff.hydro.continuity import water_balance_residual_m

FLIP_ROWS = GridSymmetry(False, True, False)


@pytest.mark.parametrize("spec, shape, expected", [
    ("left=sea:0.0,right=closed,top=closed,bottom=closed", (16, 16), {IDENTITY, FLIP_ROWS}),
    ("left=free,right=free,top=free,bottom=free", (16, 16), set(ALL)),
    ("left=free,right=free,top=free,bottom=free", (16, 24), {g for g in ALL if not g.transpose}),
    ("", (8, 8), set(ALL)),  # all walls
    ("left=sea:0.0,top=free", (8, 8), {IDENTITY}),
    ("left=sea:0.0,top=sea:0.0", (8, 8), {IDENTITY, GridSymmetry(True, False, False)}),
    ("left=sea:0.0,right=sea:1.0", (8, 8), {IDENTITY, FLIP_ROWS}),  # different stages do not swap
])
def test_allowed_symmetries_keep_every_edge(spec, shape, expected):
    allowed = boundary_symmetries(spec, shape)
    assert set(allowed) == expected and allowed[0] == IDENTITY


def test_the_eight_elements_are_distinct_and_maps_and_fluxes_agree():
    images = {tuple(transform_map(torch.arange(16.0).reshape(4, 4), g).flatten().tolist()) for g in ALL}
    assert len(images) == 8
    # a flux field that is the difference of a cell field across faces transforms like that field's
    # differences: div(F) of the transformed grid = transformed div(F)
    rng = np.random.default_rng(0)
    fx, fy = torch.tensor(rng.normal(size=(1, 3, 5))), torch.tensor(rng.normal(size=(1, 4, 4)))
    depth0 = torch.zeros(1, 3, 4, dtype=fx.dtype)
    r = water_balance_residual_m(depth0, depth0, fx, fy, 0.0, 20.0)
    for g in boundary_symmetries("", (3, 4)):
        gx, gy = transform_fluxes(fx, fy, g)
        z = transform_map(depth0, g)
        torch.testing.assert_close(water_balance_residual_m(z, z, gx, gy, 0.0, 20.0), transform_map(r, g))


def _bumpy_dem(n=16, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n]
    return (0.05 * x + 0.4 * np.sin(x / 2.3) * np.cos(y / 3.1) + 0.2 * rng.random((n, n))).astype(np.float64)


@pytest.mark.parametrize("spec", ["left=sea:0.0,right=closed,top=closed,bottom=closed",
                                  "left=free,right=free,top=free,bottom=free"])
def test_the_solver_is_equivariant_under_each_allowed_symmetry(spec):
    """The claim the augmentation rests on, checked on the solver: the flood of the transformed
    DEM is the transformed flood (depth and face discharges), for every element the boundary
    layout allows; an element it does not allow (for the sea edge) gives a different flood."""
    dem = _bumpy_dem()
    rain = np.array([0.0, 40.0, 80.0, 10.0])
    run = dict(dx=20.0, rain_mm_per_h=rain, boundaries=spec, dtype=torch.float64)
    ref = solver.simulate(dem, **run)
    t = lambda a, g: transform_map(torch.as_tensor(a), g).numpy()  # noqa: E731
    for g in boundary_symmetries(spec, dem.shape)[1:]:
        out = solver.simulate(t(dem, g).copy(), **run)
        np.testing.assert_allclose(out.depth, t(ref.depth, g), atol=1e-6)
        fx, fy = transform_fluxes(torch.as_tensor(ref.flux_x), torch.as_tensor(ref.flux_y), g)
        np.testing.assert_allclose(out.flux_x, fx.numpy(), atol=1e-3)
        np.testing.assert_allclose(out.flux_y, fy.numpy(), atol=1e-3)
    if "sea" in spec:
        flip_cols = GridSymmetry(False, False, True)
        out = solver.simulate(t(dem, flip_cols).copy(), **run)
        assert np.abs(out.depth - t(ref.depth, flip_cols)).max() > 0.01


def test_dataset_samples_under_a_symmetry_keep_the_water_balance(tiny_dataset):
    """Every training map of the tiny dataset, under each allowed element: the solver's water
    balance (depths, fluxes, rain) still closes on the transformed grid, and the prior and the
    elevation move with the depth."""
    from piff.data.torch_dataset import FloodMapDataset

    data = FloodMapDataset(tiny_dataset, "train")
    assert all(s == (IDENTITY, FLIP_ROWS) for s in data.symmetries)  # sea on the left, walls elsewhere
    for i in range(0, len(data), 7):
        s = data[i]
        for k, u in enumerate((0.0, 0.75)):
            g = data.symmetries[int(s["dem"])][k]
            m = data.transformed(i, u)
            for key in ("depth", "depth_prev", "elevation", "prior"):
                torch.testing.assert_close(m[key], transform_map(s[key], g))
            r = water_balance_residual_m(m["depth"], m["depth_prev"], m["flux_x"], m["flux_y"],
                                         m["rain_mm_per_h"], m["dx"], m["loss"])
            r0 = water_balance_residual_m(s["depth"], s["depth_prev"], s["flux_x"], s["flux_y"],
                                          s["rain_mm_per_h"], s["dx"], s["loss"])
            torch.testing.assert_close(r, transform_map(r0, g), atol=1e-6, rtol=0)


def test_a_malformed_boundary_in_the_dataset_names_the_file(tiny_dataset, tmp_path):
    """The boundaries are parsed only when the augmentation asks for them; a bad one is a
    one-line error naming the dataset, and a dataset without them gets the identity only."""
    import xarray as xr

    from piff.data.torch_dataset import FloodMapDataset
    from piff.errors import PiffInputError

    ds = xr.load_dataset(tiny_dataset)
    bad = ds.assign(boundary=("dem", ["left=lake", "left=sea:0.0"]))
    bad.to_netcdf(tmp_path / "bad.nc")
    data = FloodMapDataset(tmp_path / "bad.nc", "train")  # loads: nothing asks for the symmetries
    with pytest.raises(PiffInputError, match=r"bad\.nc: variable boundary: unknown boundary 'lake'"):
        data.transformed(0, 0.5)
    ds.drop_vars("boundary").to_netcdf(tmp_path / "none.nc")
    assert FloodMapDataset(tmp_path / "none.nc", "train").symmetries == [(IDENTITY,), (IDENTITY,)]


def test_symmetry_draws_are_a_pure_function_of_the_step_and_leave_the_data_order():
    from piff.training.config import ExperimentConfig
    from piff.training.train import microbatch_indices, microbatch_symmetry_draws

    cfg = ExperimentConfig(batch_size=8, microbatch=4, seed=3, augment="symmetry")
    plain = ExperimentConfig(batch_size=8, microbatch=4, seed=3)
    for step in (0, 5, 11):
        assert microbatch_indices(40, cfg, step, 0, 1) == microbatch_indices(40, plain, step, 0, 1)
        a = microbatch_symmetry_draws(40, cfg, step, 0, 1)
        assert a == microbatch_symmetry_draws(40, cfg, step, 0, 1) and len(a) == 4
        assert all(0 <= u < 1 for u in a)
    draws = np.concatenate([microbatch_symmetry_draws(40, cfg, s, 0, m) for s in range(5) for m in (0, 1)])
    assert 0.3 < np.mean(draws < 0.5) < 0.7  # both elements of a two-element group get drawn
