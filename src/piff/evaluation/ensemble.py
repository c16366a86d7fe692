"""Scores of probabilistic flood forecasts against the solver (docs/ensemble.md).

The proper scores come from ``scoringrules`` (maintained, numpy-native, with the CRPS of a
finite ensemble and the Brier score; ``properscoring`` has not been maintained since 2015):

* **CRPS** per cell (:func:`crps`), the integral of the squared difference between the
  ensemble's empirical CDF and the observation's step function, in metres, averaged over cells,
  hours, storms and DEMs. For a one-member "ensemble" it is that member's absolute error, so a
  deterministic forecast's CRPS is its MAE and the two compare directly.
* **CRPS decomposition** (:func:`crps_decomposition`, Hersbach 2000): the mean CRPS as
  ``reliability + potential``. The reliability part is what miscalibration costs (0 for an
  ensemble whose members are, bin by bin, as often above the truth as their rank says); the
  potential is the CRPS the same members would have with ideally recalibrated probabilities, the
  floor for any recalibration of them: below it only members with a smaller error, or a dressing
  that adds information they lack, can go.
  ``potential = uncertainty - resolution``, with the uncertainty the CRPS of the observations'
  own climatology.
* **Brier score** of P(depth > threshold) and its **skill** against climatology,
  ``BSS = 1 - BS / BS_clim`` (:func:`climatology`: per DEM, hour and cell, the fraction of the
  dataset's training storms deeper than the threshold there).
* **Reliability** (:func:`reliability`): forecast probabilities in 10 equal bins; per bin the
  mean forecast probability and the observed frequency; the largest gap to the diagonal over the
  bins holding at least ``MIN_BIN_FRACTION`` of the cases.
* **Its sampling uncertainty** (:func:`reliability_bootstrap`): the cells of one storm are not
  independent cases (a storm whose real rain is wetter than most of its members is so in most of
  its cells, on every DEM), so a reliability curve over 15 storms has about 15 independent draws
  behind it. Resampling whole storms with replacement (a block bootstrap, Wilks 2011, Statistical
  Methods in the Atmospheric Sciences, section 5.3.5) gives per bin the 5-95 % range of the
  observed frequency and of the gap: what another 15 storms could have shown. With so few
  groups, of unequal weight, the percentile range is if anything too narrow.
* **The perfect model** (:func:`perfect_model_gap`): one member as the truth, the others as the
  ensemble; what sampling and the member count alone leave on a calibrated ensemble.
* **Spread-skill** (:func:`spread_skill`): cases in bins of ensemble spread (standard deviation);
  per bin the root-mean (unbiased) ensemble variance and the RMSE of the ensemble mean. A
  calibrated ensemble of M members lies on RMSE = sqrt((M + 1) / M) x spread, so
  ``spread_skill_ratio = sqrt((M + 1) / M) x spread / RMSE`` is 1 when calibrated, < 1 when the
  ensemble is too narrow (overconfident).
"""

from __future__ import annotations

import warnings

import numpy as np

BRIER_THRESHOLDS_M = (0.1, 0.3)
RELIABILITY_BINS = 10
MIN_BIN_FRACTION = 0.01  # bins with fewer cases are too noisy to judge reliability on
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_RANGE = (5, 95)  # percentiles of the storm bootstrap reported beside a reliability figure
BOOTSTRAP_NAMES = tuple(f"p{q:02d}" for q in BOOTSTRAP_RANGE)  # their suffixes: observed_p05, ..
SPREAD_BINS = 8


def crps(obs, ens, axis: int = 0) -> np.ndarray:
    """CRPS [m] of the ensemble ``ens`` (members along ``axis``) for each observation."""
    import scoringrules as sr

    # the quantile-decomposition estimator: the CRPS of the members' empirical distribution
    # (as the energy form E|X - y| - E|X - X'| / 2), in O(M log M) per case
    return np.asarray(sr.crps_ensemble(np.asarray(obs, np.float64), np.asarray(ens, np.float64), m_axis=axis,
                                       estimator="qd", backend="numpy"))


def crps_decomposition(ens, obs, axis: int = 0, chunk: int = 1 << 16) -> dict:
    """Hersbach's (2000, Weather and Forecasting 15, 559-570) decomposition of the mean CRPS of an
    ensemble (members along ``axis``) over the observations ``obs``: {"crps", "reliability",
    "potential", "uncertainty", "resolution"}, all in the units of the data, with
    ``crps = reliability + potential`` and ``potential = uncertainty - resolution``.

    The sorted members x_1..x_N cut the line into N + 1 bins, bin i where the ensemble's CDF is
    p_i = i / N. Per case, alpha_i is the length of bin i below the observation and beta_i the
    length above it, so the case's CRPS is sum_i alpha_i p_i^2 + beta_i (1 - p_i)^2 (its eq. 26).
    Over the cases, g_i = mean(alpha_i + beta_i) is the bin's mean width and o_i = mean(beta_i) /
    g_i the frequency with which the observation lies below it; the outer bins use the outlier
    frequencies instead (eq. 33). Then reliability = sum_i g_i (o_i - p_i)^2 and potential =
    sum_i g_i o_i (1 - o_i) (eqs. 35-36). The CRPS is that of the members' empirical distribution,
    the estimator of :func:`crps`."""
    e = np.moveaxis(np.asarray(ens, np.float64), axis, 0)
    n = e.shape[0]
    e = e.reshape(n, -1)
    o = np.asarray(obs, np.float64).ravel()
    if o.size != e.shape[1]:
        raise ValueError(f"crps_decomposition: {e.shape[1]} ensemble cases against {o.size} observations")
    alpha, beta = np.zeros(n + 1), np.zeros(n + 1)
    below = above = 0  # cases with the observation below every member / above every member
    for a in range(0, o.size, chunk):
        x = np.sort(e[:, a:a + chunk], axis=0)  # (N, cases)
        y = o[a:a + chunk]
        inner = np.clip(y, x[:-1], x[1:]) - x[:-1]  # alpha of bins 1..N-1: the part below y
        alpha[1:n] += inner.sum(axis=1)
        beta[1:n] += (x[1:] - x[:-1] - inner).sum(axis=1)
        beta[0] += np.maximum(x[0] - y, 0.0).sum()
        alpha[n] += np.maximum(y - x[-1], 0.0).sum()
        below += int((y < x[0]).sum())
        above += int((y > x[-1]).sum())
    m = max(o.size, 1)
    alpha, beta = alpha / m, beta / m
    p = np.arange(n + 1) / n
    g = alpha + beta
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(g > 0, beta / g, 0.0)
    # the outer bins have no width of their own: eq. 33 takes their frequencies from the outliers
    freq[0], freq[n] = below / m, 1.0 - above / m
    g[0] = beta[0] / freq[0] if freq[0] > 0 else 0.0
    g[n] = alpha[n] / (1.0 - freq[n]) if freq[n] < 1 else 0.0
    reliability = float(np.sum(g * (freq - p) ** 2))
    potential = float(np.sum(g * freq * (1.0 - freq)))
    # the climatology's CRPS, E|Y - Y'| / 2 over the observations, from their order statistics
    ys = np.sort(o)
    k = np.arange(1, ys.size + 1)
    uncertainty = float(np.sum((2 * k - ys.size - 1) * ys) / m**2)
    return {"crps": reliability + potential, "reliability": reliability, "potential": potential,
            "uncertainty": uncertainty, "resolution": uncertainty - potential}


def brier(obs_event, prob) -> np.ndarray:
    """Brier score of each probability forecast ``prob`` of the binary events ``obs_event``."""
    import scoringrules as sr

    return np.asarray(sr.brier_score(np.asarray(obs_event, np.float64), np.asarray(prob, np.float64),
                                     backend="numpy"))


def brier_skill(bs: float, bs_reference: float) -> float:
    """1 - BS / BS_ref: 1 is perfect, 0 no better than the reference, negative worse."""
    return float(1.0 - bs / bs_reference) if bs_reference > 0 else float("nan")


def climatology(train_depth, threshold: float) -> np.ndarray:
    """P(depth > threshold) per (.., cell) over the training storms: ``train_depth`` (storm, ...)."""
    return (np.asarray(train_depth) > threshold).mean(axis=0)


def reliability(prob, obs_event, bins: int = RELIABILITY_BINS) -> dict:
    """Reliability table: per probability bin (edges 0, 1/bins, .., 1; 1 in the last bin) the case
    count, its fraction, mean forecast probability and observed frequency (NaN when empty)."""
    p = np.asarray(prob, np.float64).ravel()
    o = np.asarray(obs_event, np.float64).ravel()
    k = _probability_bin(p, bins)
    count = np.bincount(k, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(k, p, minlength=bins) / count
        freq = np.bincount(k, o, minlength=bins) / count
    return {"bin_low": np.arange(bins) / bins, "bin_high": np.arange(1, bins + 1) / bins, "count": count,
            "fraction": count / max(len(p), 1), "forecast": mean_p, "observed": freq}


def _probability_bin(p, bins: int):
    """Each probability's bin: edges 0, 1/bins, .., 1, probability 1 in the last bin."""
    return np.minimum((p * bins).astype(int), bins - 1)


def reliability_gap(table: dict, min_fraction: float = MIN_BIN_FRACTION) -> float:
    """Largest |observed frequency - mean forecast probability| over the bins holding at least
    ``min_fraction`` of the cases."""
    return float(_gaps(table["count"], table["fraction"], table["forecast"], table["observed"], min_fraction))


def _gaps(count, fraction, forecast, observed, min_fraction: float = MIN_BIN_FRACTION):
    """:func:`reliability_gap` of tables stacked along the leading axes (bins last)."""
    keep = (count > 0) & (fraction >= min_fraction)
    with np.errstate(invalid="ignore"):
        dev = np.where(keep, np.abs(observed - forecast), -np.inf)
    gap = dev.max(axis=-1)
    return np.where(np.isfinite(gap), gap, np.nan)


def reliability_bootstrap(prob, obs_event, groups, bins: int = RELIABILITY_BINS,
                          resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """The reliability table of ``resamples`` block-bootstrap resamples: each draws as many
    groups (storms) as there are, with replacement, and takes all their cases (module docstring).

    ``groups``: each case's group label. Returns {"draws": (R, G) the groups drawn (indices into
    the sorted unique labels), "count", "fraction", "forecast", "observed": (R, bins), "gap": (R,)}.
    """
    p = np.asarray(prob, np.float64).ravel()
    o = np.asarray(obs_event, np.float64).ravel()
    _, g = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    n_groups = int(g.max()) + 1 if g.size else 0
    # per (group, bin) counts and sums: a resample's table is then a weighted sum over groups
    cell = g * bins + _probability_bin(p, bins)
    count, psum, osum = (np.bincount(cell, w, minlength=n_groups * bins).reshape(n_groups, bins)
                         for w in (None, p, o))
    draws = np.random.default_rng(seed).integers(0, n_groups, (resamples, n_groups))
    weight = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(np.float64)  # (R, G)
    c, ps, os_ = weight @ count, weight @ psum, weight @ osum
    with np.errstate(invalid="ignore", divide="ignore"):
        forecast, observed = ps / c, os_ / c
    fraction = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    return {"draws": draws, "count": c, "fraction": fraction, "forecast": forecast, "observed": observed,
            "gap": _gaps(c, fraction, forecast, observed)}


def perfect_model_gap(ens, members: int, truth: int, threshold: float,
                      min_fraction: float = MIN_BIN_FRACTION) -> float:
    """The reliability gap of a perfect model: member ``truth`` of the ensemble ``ens`` (members
    on axis 0, cases after) taken as the truth and the first ``members`` of the others as the
    ensemble. The truth is then exchangeable with the members by construction, so the gap is
    what sampling (the cases, the member count) alone leaves on a calibrated ensemble: the floor
    a real ensemble's gap is read against (docs/ensemble.md)."""
    e = np.asarray(ens)
    others = [k for k in range(e.shape[0]) if k != truth][:members]
    if len(others) < members:
        raise ValueError(f"perfect_model_gap: {members} members and a truth need {members + 1}, the ensemble has "
                         f"{e.shape[0]}")
    table = reliability((e[others] > threshold).mean(axis=0), e[truth] > threshold)
    return reliability_gap(table, min_fraction)


def spread_skill(ens, obs, axis: int = 0, bins: int = SPREAD_BINS) -> dict:
    """Spread-skill table: cases in ``bins`` bins of equal count by ensemble standard deviation
    (cases with no spread, e.g. dry everywhere, in a bin of their own first); per bin the count,
    the root-mean ensemble variance (spread) and the RMSE of the ensemble mean (skill) [m]."""
    e = np.moveaxis(np.asarray(ens, np.float64), axis, 0).reshape(np.shape(ens)[axis], -1)
    o = np.asarray(obs, np.float64).ravel()
    var = _variance(e)
    err2 = (e.mean(axis=0) - o) ** 2
    zero = var <= 0
    order = np.argsort(var[~zero], kind="stable")
    groups = [np.nonzero(zero)[0]] if zero.any() else []
    groups += [g for g in np.array_split(np.nonzero(~zero)[0][order], bins) if len(g)]
    return {"count": np.array([len(g) for g in groups]),
            "spread": np.array([np.sqrt(var[g].mean()) for g in groups]),
            "rmse": np.array([np.sqrt(err2[g].mean()) for g in groups])}


def _variance(ens) -> np.ndarray:
    """Unbiased ensemble variance per case (members on axis 0); 0 for one member."""
    return ens.var(axis=0, ddof=1) if ens.shape[0] > 1 else np.zeros(ens.shape[1:])


def score(ens, obs, clim: dict, thresholds=BRIER_THRESHOLDS_M, groups=None) -> dict:
    """Every score of one ensemble: ``ens`` (N, cases), ``obs`` (cases), ``clim`` {threshold:
    (cases,) climatological probability}. Returns scalars (``crps``, ``mae_mean``,
    ``crps_reliability`` and ``crps_potential`` (:func:`crps_decomposition`),
    ``brier_<t>``, ``brier_clim_<t>``, ``bss_<t>``, ``reliability_gap_<t>``, ``spread``, ``rmse``,
    ``spread_skill_ratio``) and the tables (``reliability_<t>``, ``spread_skill``). With
    ``groups`` (each case's storm), also the storm bootstrap's ``BOOTSTRAP_RANGE`` of each gap
    (``reliability_gap_<t>_p05`` / ``_p95``, :data:`BOOTSTRAP_NAMES`) and of each bin's observed
    frequency (the table's ``observed_p05`` / ``observed_p95``)."""
    e = np.asarray(ens, np.float64)
    o = np.asarray(obs, np.float64)
    parts = crps_decomposition(e, o)
    out = {"members": int(e.shape[0]), "cases": int(o.size),
           "crps": float(crps(o, e).mean()), "mae_mean": float(np.abs(e.mean(axis=0) - o).mean()),
           "crps_reliability": parts["reliability"], "crps_potential": parts["potential"]}
    for t in thresholds:
        event = o > t
        prob = (e > t).mean(axis=0)
        bs, bs_clim = float(brier(event, prob).mean()), float(brier(event, clim[t]).mean())
        table = reliability(prob, event)
        out.update({f"brier_{t:g}": bs, f"brier_clim_{t:g}": bs_clim, f"bss_{t:g}": brier_skill(bs, bs_clim),
                    f"reliability_gap_{t:g}": reliability_gap(table), f"reliability_{t:g}": table})
        if groups is not None:
            boot = reliability_bootstrap(prob, event, groups)
            with warnings.catch_warnings():  # a bin empty in every resample has no range: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                observed = np.nanpercentile(boot["observed"], BOOTSTRAP_RANGE, axis=0)
                gap = np.nanpercentile(boot["gap"], BOOTSTRAP_RANGE)
            for name, obs_q, gap_q in zip(BOOTSTRAP_NAMES, observed, gap):
                table[f"observed_{name}"] = obs_q
                out[f"reliability_gap_{t:g}_{name}"] = float(gap_q)
    ss = spread_skill(e, o)
    spread = float(np.sqrt(_variance(e).mean()))
    rmse = float(np.sqrt(((e.mean(axis=0) - o) ** 2).mean()))
    m = e.shape[0]
    out.update({"spread_skill": ss, "spread": spread, "rmse": rmse,
                # 1 for a calibrated ensemble of m members (finite-ensemble factor sqrt((m+1)/m))
                "spread_skill_ratio": float(np.sqrt((m + 1) / m) * spread / rmse) if rmse > 0 else float("nan")})
    return out
