"""Tests of piff.hydro.storms: hyetograph shapes, the intensity cap, the scenario grid, csv files."""

from __future__ import annotations

import numpy as np
import pytest

from piff.errors import PiffInputError
from piff.hydro.storms import (
    SHAPES,
    STORM_GROUPS,
    Storm,
    cap_intensity,
    hyetograph,
    read_hyetograph,
    read_rainfall,
    read_scenario_csv,
    scenario_grid,
    write_scenario_csv,
)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("hours", [24, 6])
def test_every_shape_preserves_the_total(shape, hours):
    rain = hyetograph(shape, 137.0, hours=hours, seed=7)
    assert rain.shape == (hours,) and (rain >= 0).all()
    assert rain.sum() == pytest.approx(137.0, rel=1e-12)


def test_shapes_and_groups():
    assert len(SHAPES) == 13 and set(STORM_GROUPS) == set(SHAPES)
    assert set(STORM_GROUPS.values()) == {"uniform", "design", "real_like"}
    assert STORM_GROUPS["uniform"] == "uniform" and STORM_GROUPS["real_like_b"] == "real_like"
    np.testing.assert_allclose(hyetograph("uniform", 48.0), 2.0)


def test_scs_type2_hour_12_fraction():
    rain = hyetograph("scs_type2", 100.0)
    assert rain.argmax() == 11  # hour 11-12
    assert rain[11] == pytest.approx(42.8, abs=1e-9)  # TR-55: 0.663 - 0.235 of the total


def test_design_peaks_are_where_they_should_be():
    assert hyetograph("chicago_r0.3", 100.0).argmax() == 7  # 0.3 x 24 = 7.2 h
    assert hyetograph("chicago_r0.7", 100.0).argmax() == 16  # 16.8 h
    chicago = hyetograph("chicago_r0.5", 100.0)
    np.testing.assert_allclose(chicago, chicago[::-1], rtol=1e-9)  # symmetric about 12 h
    assert hyetograph("alternating_block", 100.0).argmax() == 11
    for q in range(1, 5):
        peak_hour = hyetograph(f"huff_q{q}", 100.0).argmax()
        assert (q - 1) * 6 <= peak_hour < q * 6
    dp = hyetograph("double_peak", 100.0)
    assert dp[:12].argmax() in range(5, 10) and dp[12:].argmax() + 12 in range(15, 19)
    assert dp[11] < 0.3 * dp.max()  # a lull between the peaks


def test_real_like_events_are_seeded_and_intermittent():
    a, b = hyetograph("real_like_a", 100.0, seed=1), hyetograph("real_like_a", 100.0, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, hyetograph("real_like_a", 100.0, seed=2))
    dry = [np.sum(hyetograph(s, 100.0, seed=k) == 0) for s in ("real_like_a", "real_like_b") for k in range(10)]
    assert max(dry) > 0  # dry spells occur


def test_cap_keeps_total_and_respects_cap():
    rain = hyetograph("scs_type2", 720.0)
    assert rain.max() > 300
    capped = cap_intensity(rain, 150.0)
    assert capped.max() <= 150.0 + 1e-9
    assert capped.sum() == pytest.approx(720.0, rel=1e-12)
    # the excess goes to the neighbouring hours, far hours are untouched
    np.testing.assert_array_equal(capped[:8], rain[:8])
    spike = np.zeros(24)
    spike[0] = 200.0
    out = cap_intensity(spike, 50.0)
    np.testing.assert_allclose(out[:4], 50.0)
    np.testing.assert_allclose(out[4:], 0.0)
    with pytest.raises(PiffInputError, match="does not fit"):
        cap_intensity(np.full(24, 10.0), 5.0)


def test_scenario_grid_is_piffs_182_and_deterministic():
    grid = scenario_grid()
    assert len(grid) == 182 and [s.storm_id for s in grid] == list(range(1, 183))
    totals = sorted({s.total_mm for s in grid})
    assert len(totals) == 14 and totals[0] == pytest.approx(24.0) and totals[-1] == pytest.approx(720.0)
    for s in grid:
        assert s.rain_mm_per_h.sum() == pytest.approx(s.total_mm, rel=1e-9)
        assert s.rain_mm_per_h.max() <= 150.0 + 1e-9
        assert s.group == STORM_GROUPS[s.shape]
    again = scenario_grid()
    assert all(np.array_equal(a.rain_mm_per_h, b.rain_mm_per_h) for a, b in zip(grid, again))
    reals = [s.rain_mm_per_h for s in grid if s.shape == "real_like_a"]
    assert not np.allclose(reals[0] / reals[0].sum(), reals[1] / reals[1].sum())  # a new event per total


# ------------------------------------------------------------------------------ csv files


def test_scenario_csv_round_trip_with_2_and_3_digit_ids(tmp_path):
    storms = [Storm(7, "uniform", "uniform", 24.0, np.full(24, 1.0)),
              Storm(123, "scs_type2", "design", 50.0, hyetograph("scs_type2", 50.0))]
    path = write_scenario_csv(storms, tmp_path / "scenario_rainfall.csv")
    header = path.read_text().splitlines()[0]
    assert header == "time,inflow_07,inflow_123"
    table = read_scenario_csv(path)
    assert sorted(table) == [7, 123]
    np.testing.assert_allclose(table[123], storms[1].rain_mm_per_h, rtol=1e-15)
    np.testing.assert_allclose(read_rainfall(path, scenario=7), 1.0)
    with pytest.raises(PiffInputError, match=r"available: 7, 123"):
        read_rainfall(path)
    with pytest.raises(PiffInputError, match=r"no scenario 5 \(available: 7, 123\)"):
        read_rainfall(path, scenario=5)


def test_piff_style_csv_single_scenario(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("time,inflow_001\n" + "".join(f"{h},{h * 0.5}\n" for h in range(1, 25)))
    np.testing.assert_allclose(read_rainfall(path), np.arange(1, 25) * 0.5)


def test_two_column_hyetograph_with_and_without_header(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("hour,mm_per_h\n1,0\n2,12.5\n3,3\n")
    b = tmp_path / "b.csv"
    b.write_text("1,0\n2,12.5\n3,3\n")
    for p in (a, b):
        np.testing.assert_allclose(read_hyetograph(p), [0, 12.5, 3])
        np.testing.assert_allclose(read_rainfall(p), [0, 12.5, 3])
    with pytest.raises(PiffInputError, match="no inflow_<id> columns"):
        read_rainfall(a, scenario=1)


@pytest.mark.parametrize("text, message", [
    ("time,inflow_01\n1,-2\n", "negative rainfall -2 mm/h in row 2, column inflow_01"),
    ("time,inflow_01\n1,abc\n", "non-numeric value 'abc' in row 2, column inflow_01"),
    ("time,inflow_01,inflow_02\n1,3\n", "missing value in row 2, column inflow_02"),
    ("time,inflow_01\n1,nan\n", "not finite"),
    ("hour,mm_per_h\n1,2\n2,x\n", "non-numeric value 'x' in row 3"),
    ("hour,mm_per_h\n1,2,3\n", "expected 2 columns"),
    ("", "empty"),
])
def test_csv_errors_name_file_row_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(PiffInputError, match=message) as err:
        read_rainfall(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_rainfall_file(tmp_path):
    with pytest.raises(PiffInputError, match="does not exist"):
        read_rainfall(tmp_path / "none.csv")
