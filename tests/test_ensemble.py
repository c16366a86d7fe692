"""Probabilistic forecasts from rainfall ensembles (issue 15): multi-member rainfall files, the
forecast-error model, batched members, the forecast products, the scores on hand-computed cases,
and the ensemble rule end to end."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

from piff.cli import main
from piff.errors import PiffInputError
from piff.evaluation import ensemble as S
from piff.hydro.rain_ensemble import ForecastErrorModel
from piff.hydro.storms import read_rainfall_members
from piff.hydro.terrain import synthetic_lowland, write_dem
from piff.inference import ensemble as E
from piff.inference import predict as P

MEMBERS = [[5.0, 10.0, 30.0, 50.0, 20.0, 5.0], [0.0, 20.0, 60.0, 10.0, 0.0, 0.0], [12.0, 12.0, 12.0, 12.0, 12.0, 12.0]]


# ----------------------------------------------------------------------------- rainfall files
def piff_csv(path, members=MEMBERS):
    rows = ["time," + ",".join(f"inflow_{k + 1:02d}" for k in range(len(members)))]
    rows += [f"{h + 1}," + ",".join(str(m[h]) for m in members) for h in range(len(members[0]))]
    path.write_text("\n".join(rows) + "\n")
    return path


def long_csv(path, members=MEMBERS, names=("a", "b", "c")):
    rows = ["member,hour,mm_per_h"] + [f"{n},{h + 1},{v}" for n, m in zip(names, members) for h, v in enumerate(m)]
    path.write_text("\n".join(rows) + "\n")
    return path


def member_nc(path, rain, time0=False, units="mm h-1"):
    rain = np.asarray(rain, np.float64)
    hours = np.arange(1, rain.shape[1] + 1)
    if time0:
        rain, hours = np.concatenate([np.zeros((len(rain), 1)), rain], axis=1), np.arange(rain.shape[1] + 1)
    xr.Dataset({"rainfall": (("member", "time"), rain, {"units": units})},
               coords={"member": [f"m{k}" for k in range(len(rain))], "time": hours}).to_netcdf(path)
    return path


@pytest.mark.parametrize("layout", ["piff", "long", "netcdf", "netcdf_time0"])
def test_every_member_layout_reads_the_same_members(layout, tmp_path):
    path = {"piff": lambda: piff_csv(tmp_path / "r.csv"), "long": lambda: long_csv(tmp_path / "r.csv"),
            "netcdf": lambda: member_nc(tmp_path / "r.nc", MEMBERS),
            "netcdf_time0": lambda: member_nc(tmp_path / "r.nc", MEMBERS, time0=True)}[layout]()
    got = read_rainfall_members(path)
    np.testing.assert_array_equal(got.rain, np.array(MEMBERS))
    assert len(got) == 3 and len(set(got.ids)) == 3


def test_long_layout_allows_interleaved_rows_and_single_series_is_one_member(tmp_path):
    rows = ["member,hour,mm_per_h"] + [f"{n},{h + 1},{m[h]}" for h in range(6) for n, m in zip("ab", MEMBERS)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    got = read_rainfall_members(tmp_path / "r.csv")
    assert got.ids == ("a", "b")
    np.testing.assert_array_equal(got.rain, np.array(MEMBERS[:2]))
    (tmp_path / "h.csv").write_text("hour,mm_per_h\n1,3\n2,4\n")
    one = read_rainfall_members(tmp_path / "h.csv")
    assert len(one) == 1 and one.rain.tolist() == [[3.0, 4.0]]


@pytest.mark.parametrize("name, text, expect", [
    ("piff-short-member", "time,inflow_01,inflow_02\n1,5,3\n2,7,\n3,1,\n",
     "members of different lengths: inflow_02 has 1 hours, others 3"),
    ("piff-empty-member", "time,inflow_01,inflow_02\n1,5,\n2,7,\n", "member inflow_02 is empty"),
    ("piff-negative", "time,inflow_01,inflow_02\n1,5,3\n2,-7,1\n", "negative rainfall -7 mm/h in row 3"),
    ("piff-text", "time,inflow_01,inflow_02\n1,5,3\n2,heavy,1\n", "non-numeric value 'heavy' in row 3"),
    ("long-short-member", "member,hour,mm_per_h\na,1,5\na,2,6\nb,1,3\n",
     "members of different lengths: member b has 1 hours, others 2"),
    ("long-empty-member", "member,hour,mm_per_h\na,1,5\na,2,6\nb,1,\nb,2,\n", "member b is empty"),
    ("long-negative", "member,hour,mm_per_h\na,1,5\na,2,-1\n", "negative rainfall -1 mm/h in row 3"),
    ("long-text", "member,hour,mm_per_h\na,1,5\na,2,lots\n", "non-numeric value 'lots' in row 3"),
    ("long-hour-gap", "member,hour,mm_per_h\na,1,5\na,3,6\n", "row 3: member a has hour '3' where 2 was expected"),
])
def test_bad_member_csv_gives_one_line_errors(name, text, expect, tmp_path):
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    with pytest.raises(PiffInputError) as err:
        read_rainfall_members(path)
    assert str(err.value).startswith(f"{path}: ") and expect in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("rain, expect, kwargs", [
    ([[1.0, 2.0, 3.0], [1.0, np.nan, np.nan]], "members of different lengths: member m1 has 1 hours, others 3", {}),
    ([[1.0, 2.0], [np.nan, np.nan]], "member m1 is empty", {}),
    ([[1.0, 2.0], [1.0, -2.0]], "member m1, hour 2: rainfall is negative", {}),
    ([[1.0, 2.0], [1.0, 2.0]], "has units 'mm'; expected mm h-1", {"units": "mm"}),
])
def test_bad_member_netcdf_gives_one_line_errors(rain, expect, kwargs, tmp_path):
    path = member_nc(tmp_path / "r.nc", rain, **kwargs)
    with pytest.raises(PiffInputError) as err:
        read_rainfall_members(path)
    assert expect in str(err.value) and str(err.value).startswith(str(path)), str(err.value)


def test_non_numeric_netcdf_member_is_refused(tmp_path):
    path = tmp_path / "r.nc"
    xr.Dataset({"rainfall": (("member", "time"), np.array([["a", "b"], ["c", "d"]]), {"units": "mm h-1"})},
               coords={"time": [1, 2]}).to_netcdf(path)
    with pytest.raises(PiffInputError, match="not numeric"):
        read_rainfall_members(path)


# ----------------------------------------------------------------------------- forecast-error model
def test_error_model_is_seeded_unbiased_and_shifts_whole_hours():
    """Around the real storm (centre "observed"), the members' errors are the model's own."""
    obs = np.r_[np.zeros(6), np.full(12, 10.0), np.zeros(6)]
    model = ForecastErrorModel(sigma_log=0.4, rho=0.6, max_shift_h=2, seed=3, centre="observed")
    a = model.members(obs, key=7, n=4)
    np.testing.assert_array_equal(a, model.members(obs, key=7, n=6)[:4])  # member m does not depend on n
    assert not np.array_equal(a, model.members(obs, key=8, n=4))  # another storm, other errors
    assert not np.array_equal(a, ForecastErrorModel(sigma_log=0.4, seed=4, centre="observed").members(obs, key=7, n=4))
    for m in range(4):  # the rain of member m sits where its timing error put it
        shift = model.shift(7, m)
        assert -2 <= shift <= 2
        wet = np.nonzero(a[m] > 0)[0]
        assert wet.min() == 6 + shift and wet.max() == 17 + shift
    many = model.members(obs, key=1, n=4000)
    wet = many[:, 8:16]  # wet under every shift
    assert abs(np.log(wet / 10.0).std() - 0.4) < 0.02
    assert abs(wet.mean() / 10.0 - 1.0) < 0.02  # the factors have mean 1
    lag = np.corrcoef(np.log(wet[:, :-1]).ravel(), np.log(wet[:, 1:]).ravel())[0, 1]
    assert abs(lag - 0.6) < 0.05
    assert ForecastErrorModel(sigma_log=3.0, cap_mm_per_h=50.0).members(obs, 1, 50).max() <= 50.0


def test_error_model_refuses_out_of_range_parameters():
    with pytest.raises(PiffInputError, match="rho"):
        ForecastErrorModel(rho=1.0)
    with pytest.raises(PiffInputError, match="centre"):
        ForecastErrorModel(centre="truth")


def _rank_counts(model, obs, n_storms, n_members, statistic):
    """Histogram of the real storm's rank among the members, by ``statistic`` of a rain series,
    over many storms (keys)."""
    ranks = [int((statistic(model.members(obs, key, n_members)) < statistic(obs)).sum()) for key in range(n_storms)]
    return np.bincount(ranks, minlength=n_members + 1)


def test_the_real_storm_is_one_more_member_around_a_forecast_centre():
    """Centred on a forecast, the real storm ranks near uniformly among the members in the rain
    that fills a flood map (12-h accumulations), exactly so per hour without timing errors;
    centred on the real storm itself it sits in the middle of the members (the over-dispersive
    design, kept as "observed")."""
    peaked = np.r_[np.zeros(3), np.linspace(2, 40, 8), np.linspace(40, 2, 8), np.zeros(5)]
    n_storms, n_members = 2000, 9
    expected = n_storms / (n_members + 1)
    chi2 = lambda c: float(((c - expected) ** 2 / expected).sum())
    critical = 27.9  # 9 degrees of freedom: P(chi2 > 27.9) = 0.001 for a flat histogram
    hour_12 = lambda r: r[..., 12]
    no_timing = dict(sigma_log=0.3, rho=0.6, max_shift_h=0, seed=5)
    assert chi2(_rank_counts(ForecastErrorModel(**no_timing), peaked, n_storms, n_members, hour_12)) < critical
    kw = dict(no_timing, max_shift_h=2)
    first_12h = lambda r: r[..., :12].sum(-1)
    for obs in (peaked, np.r_[np.zeros(4), np.full(16, 20.0), np.zeros(4)]):
        around_forecast = _rank_counts(ForecastErrorModel(**kw), obs, n_storms, n_members, first_12h)
        around_truth = _rank_counts(ForecastErrorModel(**kw, centre="observed"), obs, n_storms, n_members, first_12h)
        assert chi2(around_truth) > 10 * chi2(around_forecast), (around_forecast, around_truth)
        # the truth falls outside all members about as often as a member would (2 / 10)
        assert 0.7 * 2 * expected < around_forecast[[0, -1]].sum() < 1.3 * 2 * expected, around_forecast
        assert around_truth[[0, -1]].sum() < 0.1 * 2 * expected, around_truth
    # the centre is the real rain moved by a whole-hour timing error
    model = ForecastErrorModel(**kw)
    wet = np.nonzero(model.centre_of(peaked, key=7) > 0)[0]
    assert wet.max() - wet.min() == 15 and abs(wet.min() - 3) <= 2
    np.testing.assert_array_equal(model.members(peaked, 7, 3)[1], model.member(peaked, 7, 1))


# ----------------------------------------------------------------------------- scores (hand-computed)
def test_crps_on_hand_computed_cases():
    # members {0, 1}, observation 0.5: E|X - y| = 0.5, E|X - X'| / 2 = 0.25 -> 0.25
    assert S.crps([0.5], [[0.0], [1.0]])[0] == pytest.approx(0.25)
    # members {1, 2, 4}, observation 0: E|X - y| = 7/3; E|X - X'| = (0+1+3+1+0+2+3+2+0)/9 = 4/3 -> 7/3 - 2/3
    assert S.crps([0.0], [[1.0], [2.0], [4.0]])[0] == pytest.approx(5.0 / 3.0)
    # observation inside {1, 2, 4} at 3: E|X - y| = (2+1+1)/3 -> 4/3 - 2/3 = 2/3
    assert S.crps([3.0], [[1.0], [2.0], [4.0]])[0] == pytest.approx(2.0 / 3.0)
    # one member: the absolute error (the deterministic MAE is CRPS's one-member limit)
    obs = np.array([0.2, 0.0, 1.5])
    one = np.array([[0.5, 0.1, 1.0]])
    np.testing.assert_allclose(S.crps(obs, one), np.abs(one[0] - obs))


def test_crps_decomposition_on_hand_computed_cases():
    # members {0, 1}, observation 0.5: the middle bin (p = 1/2) is half below, half above the
    # observation, as its rank says: all CRPS is potential, none is reliability
    one = S.crps_decomposition([[0.0], [1.0]], [0.5])
    assert one["crps"] == pytest.approx(0.25) and one["reliability"] == pytest.approx(0.0)
    assert one["potential"] == pytest.approx(0.25) and one["uncertainty"] == 0.0
    # observation 2 above both members: the middle bin (width 1, p = 1/2) lies wholly below it,
    # (0 - 1/2)^2 = 0.25; the outlier bin above (length 1, p = 1) adds (0 - 1)^2 x 1 = 1
    out = S.crps_decomposition([[0.0], [1.0]], [2.0])
    assert out["crps"] == pytest.approx(1.25) and out["reliability"] == pytest.approx(1.25)
    assert out["potential"] == pytest.approx(0.0)
    # uncertainty: the CRPS of the observations' own climatology, E|Y - Y'| / 2
    obs = np.array([0.0, 1.0, 3.0])
    pairs = np.abs(obs[:, None] - obs[None, :]).mean() / 2
    assert S.crps_decomposition(np.zeros((4, 3)), obs)["uncertainty"] == pytest.approx(pairs)


@pytest.mark.parametrize("members", [1, 3, 10])
def test_crps_decomposition_adds_up_to_the_crps(members):
    # flood-like cases: many exact zeros (ties between members and the observation), chunked
    rng = np.random.default_rng(members)
    ens = np.where(rng.random((members, 3000)) < 0.4, 0.0, rng.gamma(0.7, 0.2, (members, 3000)))
    obs = np.where(rng.random(3000) < 0.4, 0.0, rng.gamma(0.7, 0.2, 3000))
    parts = S.crps_decomposition(ens, obs, chunk=512)
    assert parts["crps"] == pytest.approx(S.crps(obs, ens).mean(), rel=1e-12)
    assert parts["reliability"] >= 0 and parts["potential"] >= 0
    assert parts["resolution"] == pytest.approx(parts["uncertainty"] - parts["potential"])
    # members on another axis give the same decomposition
    moved = S.crps_decomposition(np.moveaxis(ens, 0, 1), obs, axis=1)
    assert moved["reliability"] == pytest.approx(parts["reliability"])


def test_crps_decomposition_separates_miscalibration_from_error():
    # calibrated: the truth is one more exchangeable member around a per-case location
    rng = np.random.default_rng(1)
    mu = rng.normal(0.0, 3.0, size=20000)
    draw = mu + rng.normal(size=(21, mu.size))
    obs, ens = draw[0], draw[1:]
    good = S.crps_decomposition(ens, obs)
    assert good["reliability"] < 0.01 * good["crps"]
    assert good["resolution"] > 0.5 * good["uncertainty"]  # knowing mu resolves most of it
    # the same members squeezed to half their spread: the extra CRPS is reliability, and the
    # potential (the CRPS had it been calibrated) is no worse than the calibrated ensemble's
    narrow = S.crps_decomposition(mu + 0.5 * (ens - mu), obs)
    assert narrow["crps"] > good["crps"]
    assert narrow["reliability"] > 10 * good["reliability"]
    assert narrow["potential"] <= good["crps"]
    # a worse centre (more error in every member) raises the potential: recalibration cannot remove it
    worse = S.crps_decomposition(ens + rng.normal(0.0, 1.0, size=mu.size), obs)
    assert worse["potential"] > 1.2 * good["potential"]
    scores = S.score(ens, obs, {t: np.full(obs.shape, 0.5) for t in (0.1, 0.3)})
    assert scores["crps_reliability"] + scores["crps_potential"] == pytest.approx(scores["crps"], rel=1e-12)


def test_brier_reliability_and_skill_on_hand_computed_cases():
    np.testing.assert_allclose(S.brier([1, 0, 1, 0], [0.7, 0.2, 1.0, 0.0]), [0.09, 0.04, 0.0, 0.0])
    assert S.brier_skill(0.05, 0.2) == pytest.approx(0.75)
    table = S.reliability([0.05, 0.05, 0.95, 0.95, 0.55], [0, 1, 1, 1, 0], bins=10)
    assert table["count"].tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert table["observed"][0] == 0.5 and table["observed"][9] == 1.0 and table["observed"][5] == 0.0
    assert table["forecast"][9] == pytest.approx(0.95)
    assert S.reliability_gap(table, min_fraction=0.3) == pytest.approx(0.45)  # bins 0 and 9 only
    assert S.reliability_gap(table, min_fraction=0.0) == pytest.approx(0.55)  # bin 5 counts too
    assert S.reliability([1.0], [1])["count"][-1] == 1  # probability 1 lands in the last bin
    clim = S.climatology(np.array([[0.0, 0.5], [0.2, 0.05], [0.0, 0.4]]), 0.1)
    np.testing.assert_allclose(clim, [1 / 3, 2 / 3])


def test_storm_bootstrap_of_the_reliability_table():
    rng = np.random.default_rng(3)
    prob = rng.uniform(size=600)
    event = rng.uniform(size=600) < prob
    groups = np.repeat([7, 3, 11, 5], 150)  # any labels
    boot = S.reliability_bootstrap(prob, event, groups, resamples=20, seed=1)
    labels = np.unique(groups)
    for r in range(5):  # each resample is the table of the drawn storms' cases, repeats counted
        take = np.concatenate([np.nonzero(groups == labels[i])[0] for i in boot["draws"][r]])
        table = S.reliability(prob[take], event[take])
        np.testing.assert_array_equal(boot["count"][r], table["count"])
        np.testing.assert_allclose(boot["observed"][r], table["observed"], equal_nan=True)
        np.testing.assert_allclose(boot["forecast"][r], table["forecast"], equal_nan=True)
        assert boot["gap"][r] == pytest.approx(S.reliability_gap(table))
    # one storm: every resample is the table itself
    one = S.reliability_bootstrap(prob, event, np.zeros(600), resamples=3)
    assert np.all(one["gap"] == S.reliability_gap(S.reliability(prob, event)))


def test_storm_bootstrap_is_wide_when_cells_share_their_storm_luck():
    # a calibrated ensemble whose truth is one more member, but each storm's rain is as lucky in
    # every cell (a storm-level error shared by the storm's cells): 15 storms are ~15 draws
    rng = np.random.default_rng(0)

    def case(n_storms, cells=400, members=20):
        storm = np.repeat(np.arange(n_storms), cells)
        mu = rng.normal(0.0, 1.0, size=storm.size)
        luck = rng.normal(size=(members + 1, n_storms))[:, storm]  # each member's (and the truth's) per storm
        draw = mu + luck + 0.3 * rng.normal(size=(members + 1, storm.size))
        prob, event = (draw[1:] > 0.0).mean(axis=0), draw[0] > 0.0
        table = S.reliability(prob, event)
        boot = S.reliability_bootstrap(prob, event, storm, resamples=400)
        low, high = np.nanpercentile(boot["observed"], S.BOOTSTRAP_RANGE, axis=0)
        judged = table["fraction"] >= S.MIN_BIN_FRACTION
        return table, low[judged], high[judged], judged

    table, low, high, judged = case(15)
    assert np.median(high - low) > 0.15  # what 15 storms can resolve per bin
    inside = (low <= table["forecast"][judged]) & (table["forecast"][judged] <= high)
    assert inside.mean() >= 0.6  # the diagonal lies within most bins' range (90 % each)
    _, low_many, high_many, _ = case(600)
    assert np.median(high_many - low_many) < 0.4 * np.median(high - low)  # 40x the storms: ~1/6 the range
    scores = S.score(rng.normal(size=(5, 600)), rng.normal(size=600), {t: np.full(600, 0.5) for t in (0.1, 0.3)},
                     groups=np.repeat(np.arange(6), 100))
    assert scores["reliability_gap_0.1_p05"] <= scores["reliability_gap_0.1_p95"]
    assert {"observed_p05", "observed_p95"} <= set(scores["reliability_0.1"])


def test_perfect_model_gap_takes_one_member_as_the_truth_and_shrinks_with_the_members():
    rng = np.random.default_rng(4)
    mu = rng.normal(size=30000)
    ens = mu + rng.normal(size=(101, mu.size))  # independent cases, the truth one more member
    gap = S.perfect_model_gap(ens, 10, truth=100, threshold=0.0)
    assert gap == pytest.approx(S.reliability_gap(S.reliability((ens[:10] > 0).mean(axis=0), ens[100] > 0)))
    # member 3 as the truth: the ensemble is the first 10 others, member 3 left out
    table = S.reliability((np.delete(ens, 3, axis=0)[:10] > 0).mean(axis=0), ens[3] > 0)
    assert S.perfect_model_gap(ens, 10, truth=3, threshold=0.0) == pytest.approx(S.reliability_gap(table))
    # even a perfect ensemble's member fraction k/N is off the diagonal when N is small (given k of
    # N members above, the truth's chance is pulled toward the climate's; Richardson 2001): 3 seeds
    # gave 0.145-0.148 / 0.082-0.089 / 0.044-0.045 / 0.011-0.014 at N = 5 / 10 / 20 / 99
    gaps = [S.perfect_model_gap(ens, n, truth=100, threshold=0.0) for n in (5, 10, 20, 99)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] and gaps[1] > 0.05 and gaps[3] < 0.03
    with pytest.raises(ValueError, match="need 102"):
        S.perfect_model_gap(ens, 101, truth=0, threshold=0.0)


def test_score_of_a_calibrated_and_of_a_too_narrow_ensemble():
    # calibrated: per case a location mu, and the truth is one more exchangeable member
    rng = np.random.default_rng(0)
    mu = rng.normal(0.0, 3.0, size=20000)
    draw = mu + rng.normal(size=(41, mu.size))
    obs, ens = draw[0], draw[1:]
    clim = {t: np.full(obs.shape, float((obs > t).mean())) for t in (0.1, 0.3)}
    good = S.score(ens, obs, clim)
    assert abs(good["spread_skill_ratio"] - 1.0) < 0.03
    assert good["reliability_gap_0.1"] < 0.03 and good["reliability_gap_0.3"] < 0.03
    assert good["bss_0.1"] > 0.5  # knowing mu beats the climatological probability
    narrow = S.score(mu + 0.5 * (ens - mu), obs, clim)  # half the spread: overconfident
    assert abs(narrow["spread_skill_ratio"] - 0.5) < 0.03
    assert narrow["reliability_gap_0.1"] > 0.1 and narrow["crps"] > good["crps"]
    ss = S.spread_skill(ens, obs)
    assert ss["count"].sum() == obs.size and np.all(np.diff(ss["spread"]) >= 0)


# ----------------------------------------------------------------------------- products (hand-computed)
def test_ensemble_products_on_a_hand_made_ensemble():
    # 4 members x 3 hours of one 1x2 raster; cell 1 is nodata (NaN)
    hours = [2, 4, 6]
    d = np.zeros((4, 3, 1, 2))
    d[0, :, 0, 0] = [0.0, 0.2, 0.4]  # > 0.1 from hour 4, > 0.3 at hour 6
    d[1, :, 0, 0] = [0.15, 0.05, 0.0]  # > 0.1 at hour 2 only
    d[2, :, 0, 0] = [0.0, 0.0, 0.0]
    d[3, :, 0, 0] = [0.5, 0.6, 0.2]  # > 0.3 from hour 2
    d[:, :, 0, 1] = np.nan
    out = E.ensemble_products(d, hours, thresholds=(0.1, 0.3), quantiles=(0.5,))
    assert out["p_ever_exceed"][:, 0, 0].tolist() == [0.75, 0.5]
    assert out["arrival_time"][0, 0, 0] == pytest.approx((4 + 2 + 2) / 3)
    assert out["arrival_time"][1, 0, 0] == pytest.approx((6 + 2) / 2)
    np.testing.assert_allclose(out["max_depth_mean"][0, 0], (0.4 + 0.15 + 0.0 + 0.6) / 4, rtol=1e-6)
    np.testing.assert_allclose(out["p_exceed"][:, :, 0, 0], [[0.5, 0.25], [0.5, 0.25], [0.5, 0.25]])
    np.testing.assert_allclose(out["depth_quantile"][1, 0, 0, 0], 0.125, rtol=1e-6)  # median of 0, .05, .2, .6
    assert all(np.isnan(v[..., 0, 1]).all() for v in out.values())
    dry = E.ensemble_products(np.zeros((2, 3, 1, 1)), hours)
    assert np.isnan(dry["arrival_time"]).all() and (dry["p_ever_exceed"] == 0).all()


# ----------------------------------------------------------------------------- a trained tiny model (conftest.py)
@pytest.mark.parametrize("tile", [None, 16])
def test_batched_members_equal_members_run_one_by_one(trained, tile):
    ter = synthetic_lowland(24, 20.0, seed=5)
    hours = [2, 4, 6]
    rain = np.array(MEMBERS)
    opts = dict(samples=2, nfe=2, sampler="euler_maruyama", seed=4, tile=tile, batch_size=5)
    maps, info = E.predict_members(trained, ter, rain, hours, **opts)
    assert maps.shape == (3, 2, 3, 24, 24) and info["forecast_members"] == 6
    for m in range(3):
        alone, _ = E.predict_members(trained, ter, rain[m:m + 1], hours, member_keys=[m], **opts)
        np.testing.assert_allclose(alone[0], maps[m], atol=1e-5)
    assert not np.allclose(maps[:, 0], maps[:, 1])  # bridge samples differ
    assert not np.allclose(maps[0], maps[2])  # rain members differ


def test_a_deterministic_member_is_piff_predict_of_its_rain(trained):
    ter = synthetic_lowland(16, 20.0, seed=2)
    hours = [1, 3, 6]
    maps, _ = E.predict_members(trained, ter, np.array(MEMBERS), hours, samples=5, nfe=2, sampler="euler")
    assert maps.shape[1] == 1  # a deterministic sampler has one sample per rain member
    for m, r in enumerate(MEMBERS):
        ds = P.predict_maps(trained, ter, np.array(r), hours, nfe=2, sampler="euler")
        np.testing.assert_allclose(maps[m, 0], ds["depth_mean"].values, atol=1e-5)


def test_cli_ensemble_netcdf_and_geotiff(model_path, tmp_path):
    dem = write_dem(synthetic_lowland(16, 20.0, seed=3), tmp_path / "dem.nc")
    rain = long_csv(tmp_path / "members.csv")
    out = tmp_path / "forecast.nc"
    assert main(["predict", "--no-progress", "--device", "cpu", "--model", str(model_path), "--dem", str(dem),
                 "--rain", str(rain), "--members", "2", "--nfe", "2", "--sampler", "euler_maruyama",
                 "--out", str(out)]) == 0
    ds = xr.open_dataset(out)
    assert ds.sizes["member"] == 3 and ds.sizes["time"] == 6 and ds.attrs["forecast_members"] == 6
    for name in ("depth_mean", "depth_quantile", "p_exceed", "max_depth_mean", "p_ever_exceed", "arrival_time",
                 "rainfall_member"):
        assert ds[name].attrs["units"], name
    assert ds["depth_quantile"].dims == ("time", "quantile", "y", "x")
    q = ds["depth_quantile"].values
    assert np.all(q[:, 0] <= q[:, 1] + 1e-7) and np.all(q[:, 1] <= q[:, 2] + 1e-7)
    p_ever, p = ds["p_ever_exceed"].values, ds["p_exceed"].values
    assert np.all(p_ever + 1e-6 >= p.max(axis=0))  # ever exceeding is at least as likely as at any hour
    np.testing.assert_array_equal(ds["rainfall_member"].values, np.array(MEMBERS, np.float32))
    ds.close()
    tif = tmp_path / "forecast.tif"
    assert main(["predict", "--no-progress", "--device", "cpu", "--model", str(model_path), "--dem", str(dem),
                 "--rain", str(rain), "--members", "2", "--nfe", "2", "--hours", "4", "--out", str(tif)]) == 0
    with rasterio.open(tif) as src:
        names = src.descriptions
    assert names[0] == "max_depth_mean (m)" and "depth_quantile 0.9 at hour 4 (m)" in names
    assert len(names) == 1 + 3 + 3 + 1 + 3 + 3


def test_cli_anchors_the_members_on_the_solver_run_of_the_control(model_path, tmp_path, capsys):
    """A member whose rain is the control forecast's is, anchored, the solver's own map (the
    model's maps of the same rain cancel); an independent solver run checks it. A control of
    another length, or anchoring together with the dressing, is refused in one line."""
    from piff.hydro.solver import simulate

    terrain = synthetic_lowland(16, 20.0, seed=3)
    dem = write_dem(terrain, tmp_path / "dem.nc")
    control = tmp_path / "control.csv"
    control.write_text("hour,mm_per_h\n" + "".join(f"{h},{v}\n" for h, v in enumerate(MEMBERS[0], 1)))
    out = tmp_path / "anchored.nc"
    args = ["predict", "--no-progress", "--device", "cpu", "--model", str(model_path), "--dem", str(dem),
            "--nfe", "1", "--sampler", "euler", "--anchor-rain", str(control)]
    assert main(args + ["--rain", str(long_csv(tmp_path / "one.csv", MEMBERS[:1], ("a",))), "--out", str(out)]) == 0
    ds = xr.load_dataset(out)
    assert "anchored_on" in ds.attrs and ds.sizes["member"] == 1
    solver = simulate(terrain.elevation, terrain.dx, np.array(MEMBERS[:1]), compile=True,
                      boundaries="left=free,right=free,top=free,bottom=free").depth[0][1:]
    np.testing.assert_allclose(ds["depth_mean"].values, solver, atol=1e-5)

    three = tmp_path / "three.nc"
    assert main(args + ["--rain", str(long_csv(tmp_path / "members.csv")), "--out", str(three)]) == 0
    assert xr.load_dataset(three).sizes["member"] == 3
    short = tmp_path / "short.csv"
    short.write_text("hour,mm_per_h\n1,5\n2,5\n3,5\n4,5\n5,5\n6,5\n7,5\n")
    capsys.readouterr()
    assert main(args + ["--rain", str(long_csv(tmp_path / "m.csv")), "--out", str(tmp_path / "x.nc")]
                + ["--anchor-rain", str(short)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(short) in err and "control forecast must cover" in err
    assert main(args + ["--rain", str(long_csv(tmp_path / "m.csv")), "--dressing", "3",
                        "--out", str(tmp_path / "y.nc")]) == 2
    assert "--anchor-rain" in capsys.readouterr().err


def test_cli_refuses_a_bad_member(model_path, tmp_path, capsys):
    dem = write_dem(synthetic_lowland(16, 20.0, seed=3), tmp_path / "dem.nc")
    rain = tmp_path / "bad.csv"
    rain.write_text("member,hour,mm_per_h\na,1,5\na,2,6\nb,1,3\n")
    assert main(["predict", "--no-progress", "--model", str(model_path), "--dem", str(dem), "--rain", str(rain),
                 "--out", str(tmp_path / "f.nc")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "members of different lengths" in err and str(rain) in err


# ----------------------------------------------------------------------------- the verification
def test_solver_ensemble_of_a_perfect_forecast_is_the_truth(tiny_dataset, tmp_path):
    """With no forecast error every member is the real storm: the solver ensemble (the simulate
    rule's entry point, the dataset's settings) reproduces the dataset's depth and scores 0."""
    from piff import cf
    from piff.evaluation import ensemble_runs as R

    cfg = {"n_storms": 1, "dems": [1], "members": 2, "seed": 0,
           "error_model": {"sigma_log": 0.0, "rho": 0.0, "max_shift_h": 0}}
    rain = cf.write_netcdf(R.rain_members_dataset(tiny_dataset, cfg), tmp_path / "rain.nc")
    r = xr.load_dataset(rain)
    np.testing.assert_allclose(r["rainfall_member"].values[0, 0], r["rainfall"].values[0], rtol=1e-6)
    hours = [2, 6]
    solver = cf.write_netcdf(R.solver_members(tiny_dataset, rain, hours), tmp_path / "solver.nc")
    s = xr.load_dataset(solver)
    truth = xr.load_dataset(tiny_dataset)["depth"].sel(dem=[1], storm=r["storm"].values, time=hours).values
    np.testing.assert_allclose(s["depth"].values[:, :, 0], truth, atol=1e-4)
    assert (s["wall_time"].values > 0).all()
    # the control run (the members' centre, here the real storm too) is the same solver run
    control = R.solver_members(tiny_dataset, rain, hours, control=True)
    np.testing.assert_allclose(control["depth"].values, s["depth"].values[:, :, :1], atol=1e-6)
    scores = R.summarize(tiny_dataset, {R.SOLVER: solver})["summary"]
    assert scores["crps_m"].iloc[0] < 1e-4 and scores["brier_0.1"].iloc[0] == 0.0
