"""Tests of piff.hydro.metrics on hand-made depth maps."""

from __future__ import annotations

import numpy as np
import pytest

from piff.hydro import metrics as M


@pytest.fixture
def truth():
    y = np.zeros((4, 5))
    y[1, 1:4] = [0.2, 0.6, 0.08]
    y[2, 2] = 1.0
    return y


def test_perfect_prediction(truth):
    m = M.all_metrics(truth, truth)
    for k in ("mae", "rmse", "md", "peak_error", "volume_error", "mae_wet", "rmse_wet"):
        assert m[k] == 0.0, k
    assert m["nse"] == 1.0 and m["nse_wet"] == 1.0
    for tau in M.THRESHOLDS_M:
        assert m[f"csi@{tau:g}"] == m[f"f1@{tau:g}"] == m[f"pod@{tau:g}"] == m[f"bias@{tau:g}"] == 1.0
        assert m[f"far@{tau:g}"] == 0.0


def test_all_dry_prediction(truth):
    p = np.zeros_like(truth)
    m = M.all_metrics(p, truth)
    assert m["mae"] == pytest.approx(truth.sum() / truth.size)
    assert m["md"] == 1.0 and m["peak_error"] == -1.0 and m["volume_error"] == -1.0
    assert m["csi@0.1"] == 0.0 and m["pod@0.1"] == 0.0 and m["bias@0.1"] == 0.0
    assert m["far@0.1"] == 0.0  # no predicted wet cell: no false alarm
    assert m["nse"] < 0


def test_constant_shift(truth):
    p = truth + 0.1
    assert M.mae(p, truth) == pytest.approx(0.1)
    assert M.rmse(p, truth) == pytest.approx(0.1)
    assert M.md(p, truth) == pytest.approx(0.1)
    assert M.peak_error(p, truth) == pytest.approx(0.1)
    assert M.volume_error(p, truth) == pytest.approx(0.1 * truth.size / truth.sum())
    var = ((truth - truth.mean()) ** 2).sum()
    assert M.nse(p, truth) == pytest.approx(1 - 0.01 * truth.size / var)
    # wet at 0.1 m: the truth has 3 cells (0.2, 0.6, 1.0); shifted, every cell is >= 0.1
    assert M.pod(p, truth, 0.1) == 1.0
    assert M.csi(p, truth, 0.1) == pytest.approx(3 / truth.size)
    assert M.far(p, truth, 0.1) == pytest.approx(1 - 3 / truth.size)
    assert M.bias(p, truth, 0.1) == pytest.approx(truth.size / 3)
    assert M.f1(p, truth, 0.1) == pytest.approx(6 / (6 + truth.size - 3))


def test_empty_cases():
    dry = np.zeros((3, 3))
    wet = np.full((3, 3), 0.5)
    assert M.csi(dry, dry, 0.1) == 1.0 and M.f1(dry, dry, 0.1) == 1.0 and M.bias(dry, dry, 0.1) == 1.0
    assert M.csi(wet, dry, 0.1) == 0.0 and M.far(wet, dry, 0.1) == 1.0 and M.bias(wet, dry, 0.1) == np.inf
    assert M.pod(wet, dry, 0.1) == 1.0
    assert M.volume_error(dry, dry) == 0.0 and M.volume_error(wet, dry) == np.inf
    assert np.isnan(M.nse(wet, dry))  # no variance in the reference
    assert np.isnan(M.all_metrics(dry, dry)["nse_wet"])  # no wet cell


def test_batched_over_leading_dims(truth):
    y = np.stack([truth, truth * 2, np.zeros_like(truth)])[None]  # (1, 3, ny, nx)
    p = y + np.array([0.0, 0.1, 0.2])[None, :, None, None]
    m = M.all_metrics(p, y)
    assert m["mae"].shape == (1, 3)
    np.testing.assert_allclose(m["mae"][0], [0.0, 0.1, 0.2])
    np.testing.assert_allclose(m["md"][0], [0.0, 0.1, 0.2])
    for b in range(3):
        assert m["csi@0.3"][0, b] == pytest.approx(M.csi(p[0, b], y[0, b], 0.3))


def test_valid_mask_excludes_cells(truth):
    p = truth.copy()
    p[0, 0] = 5.0  # a wrong value in a nodata cell
    valid = np.ones(truth.shape, bool)
    valid[0, 0] = False
    assert M.mae(p, truth, valid) == 0.0 and M.peak_error(p, truth, valid) == 0.0
    assert M.mae(p, truth) > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        M.mae(np.zeros((3, 3)), np.zeros((3, 4)))


def test_pooled_scores_are_scores_over_all_cells_together():
    """Pooling two maps equals scoring their cells as one map; per-map NSE of a nearly dry map
    does not drag the pooled NSE down."""
    from piff.hydro.metrics import nse, pooled_scores, pooled_sums

    rng = np.random.default_rng(0)
    y = np.stack([rng.gamma(2.0, 0.2, (8, 8)), np.full((8, 8), 0.001)])
    y[1, 0, 0] = 0.002  # nearly dry: tiny variance
    p = y + rng.normal(0, 0.01, y.shape)
    sums = pooled_sums(p, y, thresholds=(0.1,))
    total = {k: v.sum() for k, v in sums.items()}
    scores = pooled_scores(total, thresholds=(0.1,))
    one_map = (p.transpose(1, 0, 2).reshape(8, 16), y.transpose(1, 0, 2).reshape(8, 16))
    assert scores["nse_pooled"] == pytest.approx(nse(*one_map), rel=1e-12)
    assert np.nanmean(nse(p, y)) < 0.0 < 0.95 < scores["nse_pooled"]
    tp = np.sum((p >= 0.1) & (y >= 0.1))
    assert scores["csi_pooled@0.1"] == pytest.approx(tp / np.sum((p >= 0.1) | (y >= 0.1)))


def test_error_anatomy_by_depth_band_hand_computed():
    from piff.hydro.metrics import pooled_scores, pooled_sums

    y = np.array([[0.0, 0.0, 0.2, 0.6]])[None]  # two dry cells, one 0.1-0.3 m, one > 0.5 m
    p = np.array([[0.02, 0.06, 0.1, 0.6]])[None]
    s = pooled_scores({k: v.sum() for k, v in pooled_sums(p, y, thresholds=(0.1,)).items()}, thresholds=(0.1,))
    assert s["mae[dry]"] == pytest.approx(0.04) and s["bias[dry]"] == pytest.approx(0.04)
    assert s["mae[0.1-0.3]"] == pytest.approx(0.1) and s["bias[0.1-0.3]"] == pytest.approx(-0.1)
    assert s["mae[>0.5]"] == pytest.approx(0.0) and np.isnan(s["mae[0.3-0.5]"])
    assert s["share[dry]"] == pytest.approx(0.5)
    assert s["false_wet_fraction"] == pytest.approx(0.25)  # the 6 cm on a dry cell
    assert s["missed_wet_fraction"] == pytest.approx(0.0)
