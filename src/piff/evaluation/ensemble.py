"""Scores of probabilistic flood forecasts against the solver (docs/ensemble.md).

The proper scores come from ``scoringrules`` (maintained, numpy-native, with the CRPS of a
finite ensemble and the Brier score; ``properscoring`` has not been maintained since 2015):

* **CRPS** per cell (:func:`crps`), the integral of the squared difference between the
  ensemble's empirical CDF and the observation's step function, in metres, averaged over cells,
  hours, storms and DEMs. For a one-member "ensemble" it is that member's absolute error, so a
  deterministic forecast's CRPS is its MAE and the two compare directly.
* **Brier score** of P(depth > threshold) and its **skill** against climatology,
  ``BSS = 1 - BS / BS_clim`` (:func:`climatology`: per DEM, hour and cell, the fraction of the
  dataset's training storms deeper than the threshold there).
* **Reliability** (:func:`reliability`): forecast probabilities in 10 equal bins; per bin the
  mean forecast probability and the observed frequency; the largest gap to the diagonal over the
  bins holding at least ``MIN_BIN_FRACTION`` of the cases.
* **Spread-skill** (:func:`spread_skill`): cases in bins of ensemble spread (standard deviation);
  per bin the root-mean (unbiased) ensemble variance and the RMSE of the ensemble mean. A
  calibrated ensemble of M members lies on RMSE = sqrt((M + 1) / M) x spread, so
  ``spread_skill_ratio = sqrt((M + 1) / M) x spread / RMSE`` is 1 when calibrated, < 1 when the
  ensemble is too narrow (overconfident).
"""

from __future__ import annotations

import numpy as np

BRIER_THRESHOLDS_M = (0.1, 0.3)
RELIABILITY_BINS = 10
MIN_BIN_FRACTION = 0.01  # bins with fewer cases are too noisy to judge reliability on
SPREAD_BINS = 8


def crps(obs, ens, axis: int = 0) -> np.ndarray:
    """CRPS [m] of the ensemble ``ens`` (members along ``axis``) for each observation."""
    import scoringrules as sr

    # the quantile-decomposition estimator: the CRPS of the members' empirical distribution
    # (as the energy form E|X - y| - E|X - X'| / 2), in O(M log M) per case
    return np.asarray(sr.crps_ensemble(np.asarray(obs, np.float64), np.asarray(ens, np.float64), m_axis=axis,
                                       estimator="qd", backend="numpy"))


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
    k = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(k, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(k, p, minlength=bins) / count
        freq = np.bincount(k, o, minlength=bins) / count
    return {"bin_low": np.arange(bins) / bins, "bin_high": np.arange(1, bins + 1) / bins, "count": count,
            "fraction": count / max(len(p), 1), "forecast": mean_p, "observed": freq}


def reliability_gap(table: dict, min_fraction: float = MIN_BIN_FRACTION) -> float:
    """Largest |observed frequency - mean forecast probability| over the bins holding at least
    ``min_fraction`` of the cases."""
    keep = (table["count"] > 0) & (table["fraction"] >= min_fraction)
    return float(np.max(np.abs(table["observed"][keep] - table["forecast"][keep]))) if keep.any() else float("nan")


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


def score(ens, obs, clim: dict, thresholds=BRIER_THRESHOLDS_M) -> dict:
    """Every score of one ensemble: ``ens`` (N, cases), ``obs`` (cases), ``clim`` {threshold:
    (cases,) climatological probability}. Returns scalars (``crps``, ``mae_mean``,
    ``brier_<t>``, ``brier_clim_<t>``, ``bss_<t>``, ``reliability_gap_<t>``, ``spread``, ``rmse``,
    ``spread_skill_ratio``) and the tables (``reliability_<t>``, ``spread_skill``)."""
    e = np.asarray(ens, np.float64)
    o = np.asarray(obs, np.float64)
    out = {"members": int(e.shape[0]), "cases": int(o.size),
           "crps": float(crps(o, e).mean()), "mae_mean": float(np.abs(e.mean(axis=0) - o).mean())}
    for t in thresholds:
        event = o > t
        prob = (e > t).mean(axis=0)
        bs, bs_clim = float(brier(event, prob).mean()), float(brier(event, clim[t]).mean())
        table = reliability(prob, event)
        out.update({f"brier_{t:g}": bs, f"brier_clim_{t:g}": bs_clim, f"bss_{t:g}": brier_skill(bs, bs_clim),
                    f"reliability_gap_{t:g}": reliability_gap(table), f"reliability_{t:g}": table})
    ss = spread_skill(e, o)
    spread = float(np.sqrt(_variance(e).mean()))
    rmse = float(np.sqrt(((e.mean(axis=0) - o) ** 2).mean()))
    m = e.shape[0]
    out.update({"spread_skill": ss, "spread": spread, "rmse": rmse,
                # 1 for a calibrated ensemble of m members (finite-ensemble factor sqrt((m+1)/m))
                "spread_skill_ratio": float(np.sqrt((m + 1) / m) * spread / rmse) if rmse > 0 else float("nan")})
    return out
