"""Rainfall scenarios: 24-h hyetographs, the scenario grid, the intensity cap, rainfall files.

A hyetograph is a plain ``(hours,)`` array of hourly intensities in mm/h; ``rain[j]`` falls during
``(j, j + 1]`` hours (docs/architecture.md), so its sum is the event total in mm.

Shapes (:data:`SHAPES`, 13 of them; with the 14 default totals 14 x 13 = 182 scenarios, PIFF's
count), grouped as in PIFF's evaluation (:data:`STORM_GROUPS`):

uniform
    constant intensity.
scs_type2
    NRCS/SCS Type II 24-h mass curve (TR-55), ~43 % of the total in hour 11-12.
chicago_r0.3 / _r0.5 / _r0.7
    Keifer & Chu (1957) from the IDF curve ``i = a / (t + b)^c`` with the peak at ``r`` x duration.
alternating_block
    Chow, Maidment & Mays (1988): hourly increments of the same IDF curve, largest in the middle,
    the others alternately right and left of it.
huff_q1 .. huff_q4
    Huff (1967) median dimensionless mass curves of first- to fourth-quartile storms.
double_peak
    typhoon-like: a weaker outer-band peak, a dry-ish lull, then the stronger core.
real_like_a / real_like_b
    seeded stochastic events: a microcanonical multiplicative cascade with intermittency (a) and
    clustered rectangular pulses with dry spells (Neyman-Scott-like) (b).

Every shape is a cumulative mass curve ``F(u)`` on ``u`` in [0, 1] (or hourly fractions) scaled to
the requested duration, so totals are preserved exactly for any number of hours.

Rainfall files (:func:`read_rainfall`) come in the layouts of :data:`RAINFALL_LAYOUTS`; an
``hour`` column must count 1..N (PIFF's ``time`` column 0..N-1 or 1..N) in steps of one, and an
intensity above :data:`MAX_MM_PER_H` is an error: the world record for one hour is about 305 mm,
so such a value is a unit or typing mistake, not a storm.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from piff.atomic import atomic_path
from piff.errors import PiffInputError

SHAPES = ("uniform", "scs_type2", "chicago_r0.3", "chicago_r0.5", "chicago_r0.7", "alternating_block",
          "huff_q1", "huff_q2", "huff_q3", "huff_q4", "double_peak", "real_like_a", "real_like_b")
STORM_GROUPS = {s: "uniform" if s == "uniform" else "real_like" if s.startswith("real_like") else "design"
                for s in SHAPES}
DEFAULT_TOTALS_MM = np.geomspace(24.0, 720.0, 14)

# NRCS Type II 24-h cumulative fraction (TR-55 / TR-20 table): hour -> P(t)/P(24)
_SCS2_HOURS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11.5, 11.75, 12, 12.5, 13, 13.5, 14, 15, 16,
                        17, 18, 19, 20, 21, 22, 23, 24], float)
_SCS2_FRAC = np.array([0, .011, .022, .034, .048, .063, .080, .098, .120, .147, .181, .235, .283, .357, .663,
                       .735, .772, .799, .820, .854, .880, .902, .921, .938, .952, .965, .977, .989, 1.0])

# Huff (1967) median (50 %) curves: cumulative fraction of rain at t/td = 0, 0.05, ..., 1
_HUFF_T = np.linspace(0.0, 1.0, 21)
_HUFF = {
    1: [0, .063, .178, .333, .500, .620, .705, .760, .798, .830, .855, .880, .898, .915, .930, .944, .958, .971,
        .983, .994, 1],
    2: [0, .015, .031, .070, .125, .208, .305, .420, .525, .630, .725, .805, .860, .900, .930, .948, .962, .974,
        .985, .993, 1],
    3: [0, .020, .040, .072, .100, .122, .140, .155, .180, .215, .280, .395, .535, .690, .790, .875, .935, .965,
        .985, .995, 1],
    4: [0, .020, .040, .055, .070, .085, .100, .115, .135, .155, .185, .215, .245, .290, .350, .435, .545, .740,
        .940, .975, 1],
}

# IDF curve i = a / (t + b)^c (t in minutes, i in mm/h) for the Chicago and alternating-block
# storms; only b and c shape the hyetograph (a cancels when scaling to the total). Values of the
# order of Taiwanese Horner-type curves.
IDF_B_MIN = 15.0
IDF_C = 0.75


@dataclass
class Storm:
    """One scenario: id (1..N), shape name, group, 24-h total [mm], hourly intensities [mm/h]."""

    storm_id: int
    shape: str
    group: str
    total_mm: float
    rain_mm_per_h: np.ndarray


# --------------------------------------------------------------------------------------------
# shapes as hourly fractions of the total (each sums to 1)


# The model sees the 24 hourly intensities ending at its target hour (docs/architecture.md).
WINDOW_HOURS = 24


def rain_window(rainfall: np.ndarray, hour: int, window: int = WINDOW_HOURS) -> np.ndarray:
    """The ``window`` intensities [mm/h] ending at ``hour`` from a (time,) hyetograph stored with
    ``rainfall[0] = 0`` (interval convention), zero-padded on the left, float32."""
    out = np.zeros(window, np.float32)
    lo = max(1, hour - window + 1)
    vals = rainfall[lo:hour + 1]
    out[window - len(vals):] = vals
    return out


def _from_mass_curve(F, hours: int) -> np.ndarray:
    """Hourly fractions from a cumulative mass curve F(u), u in [0, 1], F(0) = 0, F(1) = 1."""
    cum = np.asarray(F(np.linspace(0.0, 1.0, hours + 1)), float)
    return np.diff(cum) / (cum[-1] - cum[0])


def _idf_depth(t_min, b=IDF_B_MIN, c=IDF_C):
    """Depth (arbitrary scale) of the IDF curve over a duration of t_min minutes: i(t) * t."""
    t_min = np.asarray(t_min, float)
    return t_min / (t_min + b) ** c


def _chicago(hours: int, r: float) -> np.ndarray:
    """Keifer & Chu: the depth in any window around the peak (split r : 1-r before/after it)
    equals the IDF depth of that window's duration, which gives the mass curve below."""
    T = hours * 60.0

    def F(u):
        t = u * T
        before = r * (_idf_depth(T) - _idf_depth(np.maximum(r * T - t, 0.0) / r))
        after = r * _idf_depth(T) + (1 - r) * _idf_depth(np.maximum(t - r * T, 0.0) / (1 - r))
        return np.where(t <= r * T, before, after) / _idf_depth(T)

    return _from_mass_curve(F, hours)


def _alternating_block(hours: int) -> np.ndarray:
    """Chow et al. (1988): hourly IDF increments, the largest in the central hour, the next ones
    placed alternately right and left of it."""
    increments = np.diff(_idf_depth(np.arange(hours + 1) * 60.0))
    order = np.sort(increments)[::-1]
    out = np.zeros(hours)
    centre = (hours - 1) // 2
    for k, value in enumerate(order):
        step = (k + 1) // 2
        out[centre + step if k % 2 == 1 else centre - step] = value
    return out / out.sum()


def _double_peak(hours: int) -> np.ndarray:
    """Typhoon-like: 10 % background, an outer-band peak (35 %) at 30 % of the duration and the
    stronger core (55 %) at 70 %, as Gaussian bursts integrated over each hour."""
    from scipy.special import ndtr

    def F(u):
        return (0.10 * u
                + 0.35 * (ndtr((u - 0.30) / 0.08) - ndtr(-0.30 / 0.08)) / (ndtr(0.70 / 0.08) - ndtr(-0.30 / 0.08))
                + 0.55 * (ndtr((u - 0.70) / 0.07) - ndtr(-0.70 / 0.07)) / (ndtr(0.30 / 0.07) - ndtr(-0.70 / 0.07)))

    return _from_mass_curve(F, hours)


def _cascade(hours: int, rng: np.random.Generator, levels: int = 7, p_dry: float = 0.25) -> np.ndarray:
    """Microcanonical multiplicative cascade: each interval splits its mass in two with weights
    (W, 1 - W), W ~ Beta(1.5, 1.5), or all to one side with probability p_dry (intermittency:
    dry spells). 2^levels fine intervals are then integrated over the hours."""
    mass = np.ones(1)
    for _ in range(levels):
        w = rng.beta(1.5, 1.5, size=mass.size)
        dry = rng.random(mass.size) < p_dry
        w = np.where(dry, (rng.random(mass.size) < 0.5).astype(float), w)
        mass = np.stack([mass * w, mass * (1 - w)], axis=1).ravel()
    fine = np.concatenate([[0.0], np.cumsum(mass)])
    return _from_mass_curve(lambda u: np.interp(u, np.linspace(0, 1, fine.size), fine), hours)


def _pulses(hours: int, rng: np.random.Generator) -> np.ndarray:
    """Clustered pulses (Neyman-Scott-like): 1-4 storm clusters, each of 1 + Poisson(3)
    rectangular cells displaced exponentially from the cluster start, lasting 0.3-3 h with
    exponential intensities; between clusters the sky is dry. Integrated on a 5-min grid."""
    fine = 12 * hours  # 5-minute steps
    t = (np.arange(fine) + 0.5) / 12.0  # hours
    rate = np.zeros(fine)
    for _ in range(rng.integers(1, 5)):
        start = rng.uniform(0.0, 0.85 * hours)
        for _ in range(1 + rng.poisson(3)):
            t0 = start + rng.exponential(1.5)
            length = rng.uniform(0.3, 3.0)
            rate += rng.exponential(1.0) * ((t >= t0) & (t < t0 + length))
    if rate.sum() == 0:  # all pulses fell after the end: one pulse in the middle
        rate[fine // 2] = 1.0
    return rate.reshape(hours, 12).sum(axis=1) / rate.sum()


def shape_fractions(shape: str, hours: int = 24, seed=0) -> np.ndarray:
    """Hourly fractions (sum 1) of a shape in :data:`SHAPES`; ``seed`` matters for real_like_*."""
    if hours < 1:
        raise ValueError(f"hours must be >= 1, got {hours}")
    if shape == "uniform":
        return np.full(hours, 1.0 / hours)
    if shape == "scs_type2":
        return _from_mass_curve(lambda u: np.interp(u * 24.0, _SCS2_HOURS, _SCS2_FRAC), hours)
    if shape.startswith("chicago_r"):
        r = float(shape[len("chicago_r"):])
        if not 0.0 < r < 1.0:
            raise ValueError(f"Chicago peak position r must be in (0, 1), got {r}")
        return _chicago(hours, r)
    if shape == "alternating_block":
        return _alternating_block(hours)
    if shape.startswith("huff_q") and shape[-1] in "1234" and len(shape) == 7:
        return _from_mass_curve(lambda u: np.interp(u, _HUFF_T, _HUFF[int(shape[-1])]), hours)
    if shape == "double_peak":
        return _double_peak(hours)
    if shape == "real_like_a":
        return _cascade(hours, np.random.default_rng(seed))
    if shape == "real_like_b":
        return _pulses(hours, np.random.default_rng(seed))
    raise ValueError(f"unknown storm shape {shape!r}; known: {', '.join(SHAPES)} (chicago_r<r> for any r)")


def hyetograph(shape: str, total_mm: float, hours: int = 24, seed=0) -> np.ndarray:
    """Hourly intensities [mm/h], shape ``(hours,)``, summing to ``total_mm`` (uncapped)."""
    if not (math.isfinite(total_mm) and total_mm >= 0):
        raise ValueError(f"total_mm must be a finite number >= 0, got {total_mm!r}")
    rain = shape_fractions(shape, hours, seed) * float(total_mm)
    rain = np.maximum(rain, 0.0)
    return rain * (total_mm / rain.sum()) if rain.sum() > 0 else rain


def cap_intensity(rain, cap_mm_per_h: float = 150.0) -> np.ndarray:
    """Limit every hour to ``cap_mm_per_h`` and move the excess to the nearest hours with room
    (both sides equally, nearer hours first), so the total is unchanged. A 720 mm SCS-II storm
    would otherwise put ~308 mm in one hour. Raises PiffInputError when the total cannot fit
    (total > cap x hours)."""
    rain = np.array(rain, dtype=np.float64)
    n = rain.size
    if rain.sum() > cap_mm_per_h * n * (1 + 1e-12):
        raise PiffInputError("cap_mm_per_h", f"a total of {rain.sum():.1f} mm does not fit in {n} h at "
                                             f"{cap_mm_per_h:g} mm/h")
    for k in np.argsort(-rain, kind="stable"):
        excess = rain[k] - cap_mm_per_h
        if excess <= 0:
            break  # sorted: no later hour exceeds the cap (filled hours only reach the cap)
        rain[k] = cap_mm_per_h
        d = 1
        while excess > 0 and d < n:
            ring = [j for j in (k - d, k + d) if 0 <= j < n]
            room = np.maximum(cap_mm_per_h - rain[ring], 0.0)
            give = min(excess, room.sum())
            if give > 0:
                rain[ring] += room * (give / room.sum())
                excess -= give
            d += 1
    return np.minimum(rain, cap_mm_per_h)


def storm_seed(seed: int, storm_id: int) -> int:
    """Per-storm seed: every real-like storm of the grid gets its own realisation."""
    return int(np.random.SeedSequence([int(seed), int(storm_id)]).generate_state(1)[0])


def scenario_grid(totals=None, shapes=None, hours: int = 24, cap_mm_per_h: float | None = 150.0,
                  seed: int = 0) -> list[Storm]:
    """The scenario table: every total x every shape, ids 1..N in that order (total-major).

    Defaults: :data:`DEFAULT_TOTALS_MM` (14 totals, 24-720 mm) x :data:`SHAPES` (13) = 182 storms.
    Each hyetograph is capped at ``cap_mm_per_h`` (None: no cap). Deterministic for a seed.
    """
    totals = DEFAULT_TOTALS_MM if totals is None else np.asarray(totals, float)
    shapes = SHAPES if shapes is None else tuple(shapes)
    storms = []
    for total in totals:
        for shape in shapes:
            sid = len(storms) + 1
            rain = hyetograph(shape, float(total), hours, seed=storm_seed(seed, sid))
            if cap_mm_per_h is not None:
                rain = cap_intensity(rain, cap_mm_per_h)
            group = STORM_GROUPS.get(shape, "real_like" if shape.startswith("real_like") else "design")
            storms.append(Storm(sid, shape, group, float(total), rain))
    return storms


# --------------------------------------------------------------------------------------------
# rainfall files


# An hourly intensity above this is not rain but an error in the file (mm/h vs mm/day, an extra
# digit): the world record for one hour is about 305 mm.
MAX_MM_PER_H = 400.0
RAINFALL_LAYOUTS = ("'hour,mm_per_h' rows (hours 1..N)", "PIFF's 'time,inflow_<id>,...' (one column per scenario)",
                    "a header-less 'hour,mm_per_h' or single mm_per_h column")


def _read_rows(path) -> list[list[str]]:
    path = Path(path)
    if not path.exists():
        raise PiffInputError(path, "rainfall file does not exist")
    if not path.is_file():
        raise PiffInputError(path, "is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [[c.strip() for c in row] for row in csv.reader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PiffInputError(path, f"not a readable csv file ({type(err).__name__}: {err})") from err
    rows = [r for r in rows if any(r)]  # blank lines
    if not rows:
        raise PiffInputError(path, "rainfall file is empty")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _value(path, text: str, row: int, column: str) -> float:
    """One intensity cell: a finite number in [0, MAX_MM_PER_H] (row: 1-based line in the file)."""
    if text == "":
        raise PiffInputError(path, f"missing value in row {row}, column {column}")
    try:
        v = float(text)
    except ValueError:
        raise PiffInputError(path, f"non-numeric value {text!r} in row {row}, column {column}") from None
    if not math.isfinite(v):
        raise PiffInputError(path, f"value {text!r} in row {row}, column {column} is not finite")
    if v < 0:
        raise PiffInputError(path, f"negative rainfall {v:g} mm/h in row {row}, column {column}")
    if v > MAX_MM_PER_H:
        raise PiffInputError(path, f"{v:g} mm/h in row {row}, column {column} is above {MAX_MM_PER_H:g} mm/h "
                                   "(the one-hour world record is about 305 mm): check the units")
    return v


def _check_hours(path, cells: list[str], first_row: int, column: str, starts=(1,)) -> None:
    """The hour column counts ``start, start + 1, ...`` (start in ``starts``): no gaps,
    duplicates or disorder; the error names the first row that breaks it."""
    expected = None
    for i, text in enumerate(cells):
        row = first_row + i
        try:
            hour = float(text)
        except ValueError:
            raise PiffInputError(path, f"row {row}: {column} {text!r} is not an hour number") from None
        if expected is None:
            if hour not in starts:
                raise PiffInputError(path, f"row {row}: the {column} column starts at {text}, expected "
                                           f"{' or '.join(str(s) for s in starts)}")
            expected = hour
        if hour != expected:
            problem = "repeats an hour" if hour < expected else "skips an hour"
            raise PiffInputError(path, f"row {row}: {column} {text} where {expected:g} was expected ({problem}; "
                                       f"hours count {starts[-1]:g}, {starts[-1] + 1:g}, ... in steps of 1)")
        expected += 1


def _inflow_id(name: str) -> int | None:
    if name.lower().startswith("inflow_") and name[7:].isdigit():
        return int(name[7:])
    return None


def read_scenario_csv(path) -> dict[int, np.ndarray]:
    """PIFF's ``scenario_rainfall.csv``: a ``time`` column (whole hours, 0.. or 1.., in steps of
    one) and one ``inflow_<id>`` column per scenario, one row per hour in mm/h. Returns
    {id: (hours,) array} in row order."""
    rows = _read_rows(path)
    header = rows[0]
    ids = {j: _inflow_id(name) for j, name in enumerate(header) if _inflow_id(name) is not None}
    if not ids:
        raise PiffInputError(path, "no inflow_<id> columns in the header")
    if len(set(ids.values())) != len(ids):
        raise PiffInputError(path, "a scenario id appears in two inflow_<id> columns")
    others = [name for j, name in enumerate(header) if j not in ids]
    if [n.lower() for n in others] != ["time"] or header[0].lower() != "time":
        raise PiffInputError(path, f"header {','.join(header)!r}: PIFF's layout is a first column 'time' and then "
                                   "inflow_<id> columns only")
    if len(rows) < 2:
        raise PiffInputError(path, "no data rows")
    _check_hours(path, [r[0] for r in rows[1:]], 2, "time", starts=(0, 1))
    out = {sid: np.empty(len(rows) - 1) for sid in ids.values()}
    for i, row in enumerate(rows[1:]):
        if len(row) > len(header):
            raise PiffInputError(path, f"row {i + 2} has {len(row)} columns, the header {len(header)}")
        for j, sid in ids.items():
            text = row[j] if j < len(row) else ""
            out[sid][i] = _value(path, text, i + 2, header[j])
    return out


def read_hyetograph(path) -> np.ndarray:
    """A csv of ``hour,mm_per_h`` rows, hours 1..N (the header may be left out), or a single
    column of intensities without header. Returns the (hours,) intensities in hour order."""
    rows = _read_rows(path)
    first = rows[0]
    if all(_is_number(c) for c in first):
        data, start = rows, 1
    elif [c.lower() for c in first] == ["hour", "mm_per_h"]:
        data, start = rows[1:], 2
    else:
        raise PiffInputError(path, f"header {','.join(first)!r} is not a rainfall layout; accepted: "
                                   + "; ".join(RAINFALL_LAYOUTS))
    if not data:
        raise PiffInputError(path, "no data rows")
    width = len(first)
    if width not in (1, 2):
        raise PiffInputError(path, f"expected 2 columns (hour, mm_per_h), found {width}")
    for i, row in enumerate(data):
        if len(row) != width:
            raise PiffInputError(path, f"row {i + start} has {len(row)} columns; expected {width} columns "
                                       f"({'hour, mm_per_h' if width == 2 else 'mm_per_h'})")
    if width == 2:
        _check_hours(path, [r[0] for r in data], start, "hour")
    col = "mm_per_h" if width == 1 else "2 (mm_per_h)"
    return np.array([_value(path, row[-1], i + start, col) for i, row in enumerate(data)])


def read_rainfall(path, scenario: int | None = None) -> np.ndarray:
    """Hourly intensities [mm/h] from a PIFF scenario csv (``scenario`` picks the inflow_<id>
    column; needed when there are several) or a two-column hyetograph csv."""
    rows = _read_rows(path)
    if not any(_inflow_id(c) is not None for c in rows[0]):
        if scenario is not None:
            raise PiffInputError(path, f"scenario {scenario} requested but the file has no inflow_<id> columns")
        return read_hyetograph(path)
    table = read_scenario_csv(path)
    available = ", ".join(str(k) for k in sorted(table))
    if scenario is None:
        if len(table) == 1:
            return next(iter(table.values()))
        raise PiffInputError(path, f"has {len(table)} scenarios; choose one with --scenario (available: {available})")
    if int(scenario) not in table:
        raise PiffInputError(path, f"no scenario {scenario} (available: {available})")
    return table[int(scenario)]


MEMBER_LAYOUTS = ("PIFF's 'time,inflow_<id>,...' (one member per column)", "'member,hour,mm_per_h' rows",
                  "a netCDF file with a rainfall variable (member, time) in mm h-1",
                  "any single-series layout of read_rainfall (one member)")
_MM_PER_H_UNITS = ("mm h-1", "mm/h", "mm h**-1", "mm hr-1", "mm/hr")


@dataclass(frozen=True)
class RainMembers:
    """A rainfall forecast ensemble: ``rain[m]`` is member ``ids[m]``'s (T,) hourly intensities
    [mm/h], every member over the same T hours."""

    ids: tuple[str, ...]
    rain: np.ndarray  # (M, T) mm/h

    def __len__(self) -> int:
        return len(self.ids)


def read_rainfall_members(path) -> RainMembers:
    """Every member of a rainfall forecast ensemble (:data:`MEMBER_LAYOUTS`); a single-series
    file is a one-member ensemble. Members must cover the same hours, and no member may be
    empty; each intensity is checked as in :func:`read_rainfall` (finite, >= 0, <= MAX_MM_PER_H)."""
    path = Path(path)
    if path.suffix.lower() in (".nc", ".nc4", ".cdf", ".netcdf"):
        return _read_members_netcdf(path)
    rows = _read_rows(path)
    header = [c.lower() for c in rows[0]]
    if any(_inflow_id(c) is not None for c in rows[0]):
        _check_member_columns(path, rows)
        table = read_scenario_csv(path)
        return RainMembers(tuple(f"inflow_{k:02d}" for k in table), np.stack(list(table.values())))
    if header == ["member", "hour", "mm_per_h"]:
        return _read_members_long(path, rows)
    return RainMembers(("1",), read_hyetograph(path)[None])


def _check_member_columns(path, rows: list[list[str]]) -> None:
    """A PIFF column that is blank throughout is an empty member; one whose values stop before
    the last row is a shorter member (the per-cell checks would only call it a missing value)."""
    header = rows[0]
    lengths = {}
    for j, name in enumerate(header):
        if _inflow_id(name) is None:
            continue
        filled = [i for i, r in enumerate(rows[1:]) if j < len(r) and r[j] != ""]
        if rows[1:] and not filled:
            raise PiffInputError(path, f"member {name} is empty (no rainfall values)")
        if filled and filled == list(range(filled[-1] + 1)):
            lengths[name] = len(filled)
    if len(set(lengths.values())) > 1:
        longest = max(lengths.values())
        short = next(n for n, k in lengths.items() if k < longest)
        raise PiffInputError(path, f"members of different lengths: {short} has {lengths[short]} hours, "
                                   f"others {longest}; every member must cover the same hours")


def _read_members_long(path, rows: list[list[str]]) -> RainMembers:
    """``member,hour,mm_per_h`` rows; a member's rows count its hours 1..N (rows of different
    members may interleave)."""
    hours: dict[str, list[str]] = {}
    values: dict[str, list[tuple[str, int]]] = {}
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise PiffInputError(path, f"row {i} has {len(row)} columns; expected 3 (member, hour, mm_per_h)")
        member = row[0]
        if member == "":
            raise PiffInputError(path, f"row {i}: the member column is blank")
        hours.setdefault(member, []).append(row[1])
        values.setdefault(member, []).append((row[2], i))
    if not hours:
        raise PiffInputError(path, "no data rows")
    for member, cells in values.items():
        if all(text == "" for text, _ in cells):
            raise PiffInputError(path, f"member {member} is empty (no rainfall values)")
    lengths = {m: len(v) for m, v in values.items()}
    if len(set(lengths.values())) > 1:
        longest = max(lengths.values())
        short = next(m for m, k in lengths.items() if k < longest)
        raise PiffInputError(path, f"members of different lengths: member {short} has {lengths[short]} hours, "
                                   f"others {longest}; every member must cover the same hours")
    rain = []
    for member, cells in values.items():
        for k, (text, row) in enumerate(zip(hours[member], (r for _, r in cells))):
            if not _is_number(text) or float(text) != k + 1:
                raise PiffInputError(path, f"row {row}: member {member} has hour {text!r} where {k + 1} was expected "
                                           "(each member's hours count 1, 2, ... in steps of 1)")
        rain.append([_value(path, text, row, f"mm_per_h (member {member})") for text, row in cells])
    return RainMembers(tuple(values), np.asarray(rain, np.float64))


def _read_members_netcdf(path: Path) -> RainMembers:
    """A netCDF variable with dims (member, time) in mm/h: ``rainfall`` or the only variable with
    a ``member`` dim. ``time`` counts the hours 1..T, or 0..T with 0 at time 0 (the dataset's
    interval convention, docs/architecture.md). NaN after a member's last hour makes it shorter."""
    import xarray as xr

    try:
        ds = xr.open_dataset(path)
    except Exception as err:  # netCDF4 raises OSError, ValueError, RuntimeError ...
        raise PiffInputError(path, f"not a readable netCDF file ({type(err).__name__}: {err})") from err
    with ds:
        names = [n for n, v in ds.data_vars.items() if "member" in v.dims]
        name = "rainfall" if "rainfall" in names else names[0] if len(names) == 1 else None
        if name is None:
            raise PiffInputError(path, "expected a variable 'rainfall' (member, time) in mm h-1; variables with a "
                                       f"member dimension: {', '.join(names) or 'none'}")
        da = ds[name]
        if da.ndim != 2 or da.dims[0] != "member":
            raise PiffInputError(path, f"variable {name} must have dims (member, time), got {da.dims}")
        units = str(da.attrs.get("units", ""))
        if units not in _MM_PER_H_UNITS:
            raise PiffInputError(path, f"variable {name} has units {units!r}; expected mm h-1")
        try:
            rain = np.asarray(da.values, np.float64)
        except (TypeError, ValueError):
            raise PiffInputError(path, f"variable {name} is not numeric ({da.dtype})") from None
        tdim = da.dims[1]
        hours = np.asarray(ds[tdim].values, np.float64) if tdim in ds.coords else np.arange(1, rain.shape[1] + 1.0)
        ids = tuple(str(v) for v in (ds["member"].values if "member" in ds.coords else range(1, rain.shape[0] + 1)))
    if rain.shape[1] and hours[0] == 0:  # the stored interval convention: time 0 holds no rain
        if np.nan_to_num(rain[:, 0]).any():
            raise PiffInputError(path, f"{tdim} 0 must hold 0 mm/h (the interval ending at the storm start)")
        rain, hours = rain[:, 1:], hours[1:]
    if not np.array_equal(hours, np.arange(1, len(hours) + 1)):
        raise PiffInputError(path, f"{tdim} must count the hours 1..T (or 0..T) in steps of 1")
    if rain.shape[0] == 0 or rain.shape[1] == 0:
        raise PiffInputError(path, f"variable {name} has no members or no hours")
    finite = ~np.isnan(rain)
    lengths = np.where(finite.any(axis=1), finite.shape[1] - np.argmax(finite[:, ::-1], axis=1), 0)
    for m in range(len(ids)):
        if lengths[m] == 0:
            raise PiffInputError(path, f"member {ids[m]} is empty (no rainfall values)")
    if len(set(lengths.tolist())) > 1:
        m = int(np.argmin(lengths))
        raise PiffInputError(path, f"members of different lengths: member {ids[m]} has {lengths[m]} hours, others "
                                   f"{lengths.max()}; every member must cover the same hours")
    for m, k in zip(*np.nonzero(~np.isfinite(rain) | (rain < 0) | (rain > MAX_MM_PER_H))):
        v = rain[m, k]
        problem = ("is not finite" if not np.isfinite(v) else f"is negative ({v:g} mm/h)" if v < 0
                   else f"is above {MAX_MM_PER_H:g} mm/h: check the units")
        raise PiffInputError(path, f"member {ids[m]}, hour {k + 1}: rainfall {problem}")
    return RainMembers(ids, rain)


def write_scenario_csv(storms: list[Storm], path) -> Path:
    """Write storms in PIFF's format: ``time`` (hour ending, 1..T) and ``inflow_<id>`` columns
    (ids zero-padded to 2 digits), atomically."""
    path = Path(path)
    hours = {len(s.rain_mm_per_h) for s in storms}
    if len(hours) != 1:
        raise ValueError(f"all storms must have the same number of hours, got {sorted(hours)}")
    n = hours.pop()
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time"] + [f"inflow_{s.storm_id:02d}" for s in storms])
        for k in range(n):
            w.writerow([k + 1] + [repr(float(s.rain_mm_per_h[k])) for s in storms])
    return path
