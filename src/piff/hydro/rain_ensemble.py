"""A rainfall-forecast error model: N forecast members of a known storm, for verifying flood
ensembles against the solver on the real storm (docs/ensemble.md).

An NWP or nowcast ensemble misses a storm in two ways: the amount of each hour, and the timing
of the whole event. :class:`ForecastErrorModel` makes member ``m`` of a storm as

    member[t] = cap(observed[t - shift_m] * exp(e[m, t] - sigma_log^2 / 2))

* ``e[m, :]``: multiplicative log-normal hourly errors, an AR(1) series in t with standard
  deviation ``sigma_log`` and lag-1 correlation ``rho`` (forecast errors persist for a few hours
  rather than flipping every hour); ``- sigma_log^2 / 2`` makes each factor's mean 1, so the
  members are unbiased in expectation;
* ``shift_m``: a timing error of whole hours, uniform in ``-max_shift_h .. max_shift_h``
  (positive = the forecast comes late); hours shifted in from outside the series are dry, and
  rain shifted past the horizon falls after it, so it cannot change a depth within it;
* ``cap``: intensities are clipped at ``cap_mm_per_h`` (the dataset's storm cap, so members stay
  in the range the models were trained on).

Member ``m`` of storm ``key`` draws from ``numpy.random.SeedSequence([seed, key, m])``: the same
seed gives the same members whatever other storms or how many members are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from piff.errors import PiffInputError
from piff.hydro.storms import MAX_MM_PER_H


@dataclass(frozen=True)
class ForecastErrorModel:
    sigma_log: float = 0.3  # std of the hourly log-error
    rho: float = 0.6  # lag-1 autocorrelation of the hourly log-errors
    max_shift_h: int = 2  # timing error, whole hours, uniform in -max..max
    cap_mm_per_h: float = MAX_MM_PER_H
    seed: int = 0

    def __post_init__(self):
        for name, ok in (("sigma_log", self.sigma_log >= 0), ("rho", -1 < self.rho < 1),
                         ("max_shift_h", self.max_shift_h >= 0), ("cap_mm_per_h", self.cap_mm_per_h > 0)):
            if not ok:
                raise PiffInputError("forecast error model", f"{name} = {getattr(self, name)!r} is out of range")

    def shift(self, key: int, member: int) -> int:
        """The timing error [h] of member ``member`` of storm ``key``."""
        return int(self._rng(key, member).integers(-self.max_shift_h, self.max_shift_h + 1))

    def member(self, observed, key: int, member: int) -> np.ndarray:
        """(T,) mm/h: member ``member`` of the forecast of storm ``key`` whose real rain is ``observed``."""
        rain = np.asarray(observed, np.float64)
        rng = self._rng(key, member)
        shift = int(rng.integers(-self.max_shift_h, self.max_shift_h + 1))
        z = rng.standard_normal(rain.size)
        e = np.empty(rain.size)
        if rain.size:
            e[0] = z[0]
            for t in range(1, rain.size):  # stationary AR(1) with unit variance
                e[t] = self.rho * e[t - 1] + np.sqrt(1.0 - self.rho ** 2) * z[t]
        factor = np.exp(self.sigma_log * e - 0.5 * self.sigma_log ** 2)
        shifted = np.zeros_like(rain)
        if shift >= 0:
            shifted[shift:] = rain[:rain.size - shift]
        else:
            shifted[:shift] = rain[-shift:]
        return np.minimum(shifted * factor, self.cap_mm_per_h)

    def members(self, observed, key: int, n: int) -> np.ndarray:
        """(n, T) mm/h: the first ``n`` members of storm ``key``."""
        return np.stack([self.member(observed, key, m) for m in range(int(n))])

    def _rng(self, key: int, member: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), int(key), int(member)]))
