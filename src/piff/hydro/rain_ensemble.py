"""A rainfall-forecast error model: N forecast members of a known storm, for verifying flood
ensembles against the solver on the real storm (docs/ensemble.md).

An NWP or nowcast ensemble misses a storm in two ways: the amount of each hour, and the timing
of the whole event. :class:`ForecastErrorModel` perturbs a series ``r`` as

    perturb(r)[t] = r[t - shift] * exp(e[t] - sigma_log^2 / 2)

* ``e``: multiplicative log-normal hourly errors, an AR(1) series in t with standard deviation
  ``sigma_log`` and lag-1 correlation ``rho`` (forecast errors persist for a few hours rather
  than flipping every hour); ``- sigma_log^2 / 2`` makes each factor's mean 1;
* ``shift``: a timing error of whole hours, uniform in ``-max_shift_h .. max_shift_h``
  (positive = the forecast comes late); hours shifted in from outside the series are dry, and
  rain shifted past the horizon falls after it, so it cannot change a depth within it.

Member ``m`` is ``min(cap, perturb(centre))`` with its own draw, ``cap`` the dataset's storm cap
(members stay in the range the models were trained on). The ``centre`` (``piff.choices.FORECAST_CENTRES``):

* ``forecast`` (default): the ensemble's central forecast misses the real storm by one draw of
  the same error, taken the other way: ``centre[u] = observed[u + s] * exp(-e[u + s] + sigma_log^2 / 2)``,
  so that ``observed = perturb(centre)`` with the timing error ``s`` and the hourly errors ``e``.
  Without timing errors the real storm is then distributed around the centre hour by hour
  exactly as each member is (``e`` is a zero-mean Gaussian AR(1)): the truth is exchangeable
  with the members, the condition under which a perfect model's ensemble is calibrated (a flat
  rank histogram, a reliability curve on the diagonal). The timing errors break this for a
  single hour's intensity (the members sample the centre's errors at other hours) and mostly
  not for the accumulations that drive a flood depth (tests/test_ensemble.py measures both).
  This is what an operational ensemble faces: its members scatter around a forecast, not
  around the storm that will fall.
* ``observed``: the members scatter around the real storm itself. The truth is then the
  ensemble's median rather than one of its members, so even the solver's ensemble is
  over-dispersive: in the demo its spread-skill ratio was 1.28 and its reliability gap at 0.1 m
  0.19 (docs/ensemble.md). Kept to compare with the earlier results.

Member ``m`` of storm ``key`` draws from ``numpy.random.SeedSequence([seed, key, m])``, the
centre from ``[seed, key, CENTRE_STREAM]``: the same seed gives the same members whatever other
storms or how many members are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from piff.choices import DEFAULT_FORECAST_CENTRE, FORECAST_CENTRES
from piff.errors import PiffInputError
from piff.hydro.storms import MAX_MM_PER_H

# The random stream of the central forecast: a member index no ensemble reaches.
CENTRE_STREAM = 2 ** 31


@dataclass(frozen=True)
class ForecastErrorModel:
    sigma_log: float = 0.3  # std of the hourly log-error
    rho: float = 0.6  # lag-1 autocorrelation of the hourly log-errors
    max_shift_h: int = 2  # timing error, whole hours, uniform in -max..max
    cap_mm_per_h: float = MAX_MM_PER_H
    seed: int = 0
    centre: str = DEFAULT_FORECAST_CENTRE  # one of piff.choices.FORECAST_CENTRES (module docstring)

    def __post_init__(self):
        for name, ok in (("sigma_log", self.sigma_log >= 0), ("rho", -1 < self.rho < 1),
                         ("max_shift_h", self.max_shift_h >= 0), ("cap_mm_per_h", self.cap_mm_per_h > 0),
                         ("centre", self.centre in FORECAST_CENTRES)):
            if not ok:
                raise PiffInputError("forecast error model", f"{name} = {getattr(self, name)!r} is out of range")

    def shift(self, key: int, member: int) -> int:
        """The timing error [h] of member ``member`` of storm ``key`` (from the ensemble's centre)."""
        return self._draw(self._rng(key, member), 0)[0]

    def centre_of(self, observed, key: int) -> np.ndarray:
        """(T,) mm/h: the central forecast of storm ``key`` whose real rain is ``observed``
        (module docstring); the real storm itself when ``centre`` is ``observed``."""
        rain = np.asarray(observed, np.float64)
        if self.centre == "observed":
            return rain
        shift, e = self._draw(self._rng(key, CENTRE_STREAM), rain.size)
        # observed[t] = centre[t - shift] * f[t]  =>  centre[u] = observed[u + shift] / f[u + shift]
        return _shifted(rain / self._factor(e), -shift)

    def member(self, observed, key: int, member: int) -> np.ndarray:
        """(T,) mm/h: member ``member`` of the forecast of storm ``key`` whose real rain is ``observed``."""
        return self._perturb(self.centre_of(observed, key), self._rng(key, member))

    def members(self, observed, key: int, n: int) -> np.ndarray:
        """(n, T) mm/h: the first ``n`` members of storm ``key``."""
        centre = self.centre_of(observed, key)
        return np.stack([self._perturb(centre, self._rng(key, m)) for m in range(int(n))])

    def _perturb(self, rain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shift, e = self._draw(rng, rain.size)
        return np.minimum(_shifted(rain, shift) * self._factor(e), self.cap_mm_per_h)

    def _factor(self, e: np.ndarray) -> np.ndarray:
        """The hourly multiplicative errors of a unit AR(1) series ``e``: log-normal, mean 1."""
        return np.exp(self.sigma_log * e - 0.5 * self.sigma_log ** 2)

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
        """(timing error [h], unit-variance AR(1) series of length n) from one stream."""
        shift = int(rng.integers(-self.max_shift_h, self.max_shift_h + 1))
        z = rng.standard_normal(n)
        e = np.empty(n)
        if n:
            e[0] = z[0]
            for t in range(1, n):  # stationary AR(1) with unit variance
                e[t] = self.rho * e[t - 1] + np.sqrt(1.0 - self.rho ** 2) * z[t]
        return shift, e

    def _rng(self, key: int, member: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), int(key), int(member)]))


def _shifted(rain: np.ndarray, shift: int) -> np.ndarray:
    """``rain`` moved ``shift`` hours later (earlier when negative); the hours moved in are dry."""
    out = np.zeros_like(rain)
    if shift >= 0:
        out[shift:] = rain[:rain.size - shift]
    else:
        out[:shift] = rain[-shift:]
    return out
