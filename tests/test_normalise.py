"""Normaliser: fitted statistics, metres <-> model round trips, persistence."""

import numpy as np
import pytest
import torch

from piff.errors import PiffInputError
from piff.model.normalise import DEEP_TAIL_TARGET, MIN_DEPTH_SCALE_M, Normaliser


def _training_arrays(seed=0):
    rng = np.random.default_rng(seed)
    elevation = 10.0 + 3.0 * rng.standard_normal((2, 32, 32))
    # mostly dry maps with a wet tail, as flood depths are
    depth = np.where(rng.random((5, 32, 32)) < 0.8, 0.0, rng.exponential(0.3, (5, 32, 32)))
    return depth, elevation


def test_fit_statistics():
    depth, elevation = _training_arrays()
    n = Normaliser.fit(depth, elevation)
    assert n.elevation_mean == pytest.approx(elevation.mean())
    assert n.elevation_std == pytest.approx(elevation.std())
    # the deep tail (99.9th percentile) lands at DEEP_TAIL_TARGET in model space
    assert n.to_model_depth(np.quantile(depth, 0.999)) == pytest.approx(DEEP_TAIL_TARGET)
    z = n.to_model_elevation(elevation)
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0)


def test_round_trips_numpy_and_torch():
    depth, elevation = _training_arrays()
    n = Normaliser.fit(torch.from_numpy(depth), torch.from_numpy(elevation))  # tensors are accepted too
    np.testing.assert_allclose(n.to_metres_depth(n.to_model_depth(depth)), depth, atol=1e-12)
    np.testing.assert_allclose(n.to_metres_elevation(n.to_model_elevation(elevation)), elevation, atol=1e-9)
    np.testing.assert_allclose(n.to_metres_prior(n.to_model_prior(depth)), depth, atol=1e-12)
    t = torch.from_numpy(depth).float()
    torch.testing.assert_close(n.to_metres_depth(n.to_model_depth(t)), t)
    assert n.to_model_depth(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]  # dry stays exactly dry


def test_spm_uses_the_depth_transform():
    n = Normaliser.fit(*_training_arrays())
    assert n.to_model_prior(0.7) == n.to_model_depth(0.7)


def test_transform_is_differentiable():
    n = Normaliser.fit(*_training_arrays())
    x = torch.ones(4, requires_grad=True)
    n.to_metres_depth(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4,), n.depth_scale))


def test_state_dict_round_trip():
    n = Normaliser.fit(*_training_arrays())
    m = Normaliser.from_state_dict(n.state_dict())
    assert m == n
    with pytest.raises(PiffInputError):
        Normaliser.from_state_dict({**n.state_dict(), "version": 99})


def test_degenerate_inputs():
    n = Normaliser.fit(np.zeros((3, 8, 8)), np.full((8, 8), 5.0))  # all dry, flat DEM
    assert n.depth_scale == MIN_DEPTH_SCALE_M and n.elevation_std > 0
    with pytest.raises(PiffInputError):
        Normaliser.fit(np.array([]), np.ones(4))
    with pytest.raises(PiffInputError):
        Normaliser.fit(np.array([0.0, np.nan]), np.ones(4))
