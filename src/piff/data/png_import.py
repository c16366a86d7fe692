"""Import a PIFF PNG dataset folder into the piff netCDF format (:mod:`piff.data.format`).

PIFF distributes its data as folders of 8-bit PNGs. :func:`import_png_folder` reads such a
folder and returns an ``xarray.Dataset`` with dims ``(dem, storm, time, y, x)``; the
``piff import-png`` command writes it with :func:`piff.data.format.write_netcdf`.

What is accepted
================
The folder is searched recursively (hidden files and folders are skipped); files are
recognised by name, case-insensitively, so they may sit in the root or in any subfolder
(``dem_png/``, ``depth/``, ``Depth/``, ``DEPTH_png/<dem>/RF<id>/``, ``Vx/``, ``d/`` ...).

``elevation_stats.csv`` (exactly one)
    Columns ``Filename``, ``Min Elevation``, ``Max Elevation`` (header matching ignores case,
    spaces and underscores). ``Filename`` is a DEM PNG name with or without ``.png``; the DEM
    name is its stem. Each listed DEM is looked up first in the csv's own folder, then anywhere.
    The csv's folder is the DEM folder: a PNG there that is neither a map nor listed in the
    csv is an error (a DEM without statistics), as is a listed DEM that is not found.
DEM PNGs
    Grayscale 8- or 16-bit (or RGB/RGBA/LA/palette, of which the first channel is used):
    ``elevation = min + p / pmax * (max - min)`` with ``pmax`` = 255 (8-bit) or 65535 (16-bit).
    All DEMs must have the same size. One DEM is PIFF's "single" setting.
``scenario_rainfall.csv`` (exactly one)
    A ``time`` column plus one ``inflow_<id>`` column per scenario (hourly mm/h), read with
    :func:`piff.hydro.storms.read_scenario_csv`. Which hour a row describes is decided from
    the ``time`` column and the number of hours ``T`` of the depth maps (see
    :func:`rainfall_table`): first ``time`` 1 -> the row at ``time = k`` is the hour ending at
    ``k``; first ``time`` 0 with ``T + 1`` rows -> the same, and the ``time = 0`` row must be
    dry (it is the stored ``rainfall[:, 0] = 0``); first ``time`` 0 with ``T`` rows -> rows
    label the hour *starting* at ``time``, so row ``k`` is stored at ``k + 1``. Anything else
    is an error. Extra rows beyond hour ``T`` are ignored only when ``hours`` cuts the event.
Depth PNGs
    ``[<dem>_]RF<id>[_d|_depth]_<hhh>[_<mm>].png``, e.g. ``A_RF01_d_005_00.png`` (multi-DEM),
    ``RF105_d_024_00.png`` (single DEM) or PIFF's multi-DEM ``61_RF01_005.png``. ``<id>`` is
    the scenario id (``RF01`` and ``RF1`` are both id 1), ``<hhh>`` the hour. Only minute
    ``00`` is imported; sub-hourly maps (``_30``) are skipped with a log message. Without a
    ``<dem>_`` prefix the DEM is the only DEM, or else the nearest parent folder named like a
    DEM. 8-bit inverted: ``depth = (1 - p / pmax) * depth_full_scale_m`` (255 = dry). Hours
    1..T must all be present for every DEM and imported scenario; hour 0 may be missing (then
    the depth at hour 0 is 0). ``T`` is the largest hour found unless ``hours`` is given.
Velocity PNGs (optional)
    Named like depth maps with ``_vx_`` / ``_vy_`` in place of ``_d_`` (``A_RF01_vx_005_00.png``,
    in any folder, e.g. ``Vx/``). Signed encoding ``v = (2 p / pmax - 1) * velocity_full_scale``
    (m/s; zero lies between two 8-bit levels, so still water reads as +-scale/255). ``vx`` is
    positive towards +x (east), ``vy`` towards increasing row (south), as in piff; maps using
    north-positive ``vy`` must be flipped before import. Imported only when
    ``velocity_full_scale`` is given (otherwise they are skipped with a log message). They are
    stored in ``vx``/``vy`` at hours 1..T as read (PNG snapshots, not hour means; see the
    ``velocity_note`` attribute); hour 0 is 0 by the interval convention.
SPM PNGs (optional)
    ``SPM_<mm>.png``, ``<dem>_SPM_<mm>.png`` or PIFF's ``SPM_<tag>_<mm>.png``: the SPM depth for
    ``<mm>`` of cumulative rain, inverted like depth with the same full scale. With one DEM any
    tag is accepted; with several, the tag or prefix must name a DEM. The ``<mm>`` values of
    every DEM must be the consecutive SPM bins 5, 10, ... (a prefix of
    :data:`piff.hydro.spm.SPM_BINS_MM`, since the lookup indexes bins by position).
    Without SPM PNGs the table is computed with :class:`piff.hydro.spm.FillAndSpill`; water
    leaves through the edge cells of ``outlets`` (default: all four edges).
Other PNGs outside the DEM folder (previews, legends) are ignored.

Errors are :class:`~piff.errors.PiffInputError` naming the folder (or file) and listing the
offending files (ten at most, then ``... and N more``): missing csv files, DEMs missing or not
listed, unreadable PNGs, sizes that differ from the DEM, scenario ids without a rainfall
column, missing hours, duplicate maps, bad split ids.

What the imported dataset lacks
===============================
PNG data carries no hour-integrated face fluxes, so there is no ``flux_x``/``flux_y`` and the
physics (continuity) loss needs a simulated dataset. Depths are quantised to
``depth_full_scale_m / 255`` (1.6 cm at 4 m) and clipped at the full scale; the attributes
``quantisation_step_m`` and ``quantisation_note`` record this.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from piff import __version__
from piff.data import format as fmt
from piff.errors import PiffInputError

log = logging.getLogger(__name__)

STATS_CSV = "elevation_stats.csv"
RAIN_CSV = "scenario_rainfall.csv"
SHOWN_FILES = 10  # an error message lists at most this many files
UNIFORM_REL_TOL = 0.01  # hyetograph values within 1 % count as constant (csv rounding)

# [<dem>_]RF<id>[_<var>]_<hour>[_<minute>].png ; no <var> means depth (PIFF's 61_RF01_005.png)
_MAP_RE = re.compile(r"^(?:(?P<dem>.+)_)?RF(?P<id>\d+)(?:_(?P<var>d|depth|vx|vy))?_(?P<hour>\d+)"
                     r"(?:_(?P<minute>\d{2}))?\.png$", re.IGNORECASE)
# [<dem>_]SPM[_<tag>]_<mm>.png
_SPM_RE = re.compile(r"^(?:(?P<dem>.+)_)?SPM(?:_(?P<tag>[^_]+))?_(?P<mm>\d+)\.png$", re.IGNORECASE)
_VAR = {None: "depth", "d": "depth", "depth": "depth", "vx": "vx", "vy": "vy"}


@dataclass
class MapFile:
    """One hourly map PNG: ``var`` in depth/vx/vy; ``dem`` is the name prefix (or None)."""

    path: Path
    var: str
    dem: str | None
    storm: int
    hour: int
    hour_span: tuple[int, int]  # where the hour digits sit in the file name

    def sibling(self, hour: int) -> Path:
        """The path this map would have at another hour (for 'missing file' messages)."""
        a, b = self.hour_span
        name = self.path.name
        return self.path.with_name(f"{name[:a]}{hour:0{b - a}d}{name[b:]}")


@dataclass
class SpmFile:
    path: Path
    tag: str | None  # DEM prefix or PIFF's SPM_<tag>_ tag
    mm: int


@dataclass
class Dem:
    name: str
    path: Path
    elevation: np.ndarray


# ----------------------------------------------------------------------------- public API
def import_png_folder(folder, *, depth_full_scale_m: float = 4.0, dx: float = 20.0, test_ids=(), val_ids=(),
                      velocity_full_scale: float | None = None, hours: int | None = None,
                      outlets=None) -> xr.Dataset:
    """Read a PIFF PNG dataset folder (layout: module docstring) into a piff dataset.

    ``depth_full_scale_m``: metres of a black (p = 0) depth or SPM pixel. ``dx``: cell size
    in metres (PNGs carry none). ``test_ids``/``val_ids``: scenario ids of those splits, the
    rest is train. ``velocity_full_scale``: m/s of the velocity encoding; None skips velocity
    PNGs. ``hours``: import hours 0..hours only (default: all hours of the depth maps).
    ``outlets``: edges (``left``, ``right``, ``top``, ``bottom``) through which water leaves
    in the computed SPM table; None means all four (unused when SPM PNGs are present).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PiffInputError(folder, "PNG dataset folder does not exist or is not a folder")
    _check_positive("--depth-full-scale", depth_full_scale_m)
    _check_positive("--dx", dx)
    if velocity_full_scale is not None:
        _check_positive("--velocity-full-scale", velocity_full_scale)
    if hours is not None and int(hours) < 1:
        raise PiffInputError("--hours", f"must be at least 1, got {hours}")
    outlet_spec = _outlet_spec(outlets)

    files = _list_files(folder)
    stats_csv, rain_csv = _find_csv(folder, files, STATS_CSV), _find_csv(folder, files, RAIN_CSV)
    maps, spm_files, others = _classify(files)
    dems = read_dems(folder, stats_csv, others)
    names = [d.name for d in dems]
    _attach_dems(folder, maps, names)
    if velocity_full_scale is None and any(m.var != "depth" for m in maps):
        log.info("velocity PNGs found but no velocity full scale given: vx/vy are not imported")
        maps = [m for m in maps if m.var == "depth"]

    rain_by_id, time_values = _read_scenarios(rain_csv)
    _check_known_ids(folder, rain_csv, maps, rain_by_id)
    depth_maps = [m for m in maps if m.var == "depth"]
    if not depth_maps:
        raise PiffInputError(folder, "no depth PNGs named [<dem>_]RF<id>_d_<hhh>_00.png were found")
    hours_found = max(m.hour for m in depth_maps)
    n_hours = hours_found if hours is None else int(hours)
    storm_ids = _storm_ids(depth_maps, rain_by_id)
    splits = split_labels(storm_ids, test_ids, val_ids)  # checked before the slow reading
    rainfall, time_rule = rainfall_table(rain_csv, rain_by_id, time_values, storm_ids, n_hours, hours_found)
    index = _index_maps(folder, maps, names, storm_ids, n_hours, velocity_full_scale is not None)

    ny, nx = dems[0].elevation.shape
    problems = _Problems(folder, (ny, nx))
    shape = (len(dems), len(storm_ids), n_hours + 1, ny, nx)
    depth = _read_stack(index["depth"], shape, lambda q: (1.0 - q) * depth_full_scale_m, problems)
    velocity = {}
    if velocity_full_scale is not None:
        for var in ("vx", "vy"):
            velocity[var] = _read_stack(index[var], shape, lambda q: (2.0 * q - 1.0) * velocity_full_scale, problems)
            velocity[var][:, :, 0] = 0.0  # interval variable: nothing happened before time 0
    spm = _read_spm_pngs(folder, spm_files, names, (ny, nx), depth_full_scale_m, problems)
    problems.raise_if_any()
    if spm is None:
        spm = _compute_spm(dems, dx, outlet_spec)

    options = {"depth_full_scale_m": float(depth_full_scale_m), "dx": float(dx), "hours": n_hours,
               "velocity_full_scale": velocity_full_scale, "outlets": outlet_spec.to_string(),
               "splits": dict(zip(map(str, storm_ids), splits))}
    ds = _assemble(folder, dems, dx, storm_ids, rainfall, splits, depth, velocity, spm, options)
    ds.attrs["rainfall_time_rule"] = time_rule
    if velocity:
        ds.attrs["velocity_full_scale_m_per_s"] = float(velocity_full_scale)
        ds.attrs["velocity_note"] = ("vx/vy decoded from PNG snapshots at each hour, (2 p/255 - 1) x full scale, "
                                     "not hour means; quantised to 2 x full scale / 255; vy positive towards "
                                     "increasing row (south); 0 at hour 0")
    return ds


# ----------------------------------------------------------------------------- finding files
def _list_files(folder: Path) -> list[Path]:
    """All files under ``folder`` (recursively), hidden files and folders excluded, sorted."""
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(p)
    return sorted(out)


def _find_csv(folder: Path, files: list[Path], name: str) -> Path:
    found = [p for p in files if p.name.lower() == name]
    if not found:
        raise PiffInputError(folder / name, f"missing: the PNG dataset folder has no {name}")
    if len(found) > 1:
        raise PiffInputError(folder, f"several {name} files, expected one: {_names(found, folder)}")
    return found[0]


def _classify(files: list[Path]):
    """Split the PNGs into hourly maps, SPM maps and other PNGs (DEMs, previews)."""
    maps, spm, others, skipped = [], [], [], 0
    for p in files:
        if p.suffix.lower() != ".png":
            continue
        if (m := _SPM_RE.match(p.name)) is not None:
            spm.append(SpmFile(p, m["dem"] or m["tag"], int(m["mm"])))
        elif (m := _MAP_RE.match(p.name)) is not None:
            if m["minute"] not in (None, "00"):
                skipped += 1  # sub-hourly output: the dataset is hourly
                continue
            maps.append(MapFile(p, _VAR[(m["var"] or "").lower() or None], m["dem"], int(m["id"]),
                                int(m["hour"]), m.span("hour")))
        else:
            others.append(p)
    if skipped:
        log.info("skipped %d sub-hourly map PNGs (minute other than 00)", skipped)
    return maps, spm, others


# ----------------------------------------------------------------------------- DEMs
def read_dems(folder: Path, stats_csv: Path, pngs: list[Path]) -> list[Dem]:
    """The DEMs listed in ``elevation_stats.csv``, in csv order, decoded to metres.

    ``pngs`` are the PNGs that are not maps. A listed DEM is searched in the csv's folder
    first, then anywhere; a PNG in the csv's folder that the csv does not list is an error.
    """
    rows = _read_stats(stats_csv)
    listed = {name for name, *_ in rows}
    dem_folder = stats_csv.parent
    found, missing = {}, []
    for name, filename, _, _ in rows:
        hits = sorted((p for p in pngs if p.stem == name), key=lambda p: (p.parent != dem_folder, len(p.parts)))
        if hits:
            found[name] = hits[0]
        else:
            missing.append(dem_folder / (filename if filename.lower().endswith(".png") else f"{filename}.png"))
    unlisted = [p for p in pngs if p.parent == dem_folder and p.stem not in listed]
    if missing or unlisted:
        parts = []
        if missing:
            parts.append(f"DEMs listed but not found: {_names(missing, folder)}")
        if unlisted:
            parts.append(f"DEM PNGs not listed: {_names(unlisted, folder)}")
        raise PiffInputError(stats_csv, "; ".join(parts))

    problems = _Problems(folder, None)
    dems = []
    for name, _, lo, hi in rows:
        q = problems.read(found[name])
        if q is not None:
            dems.append(Dem(name, found[name], (lo + q * (hi - lo)).astype(np.float32)))
    problems.raise_if_any()
    shape = dems[0].elevation.shape
    odd = [d.path for d in dems if d.elevation.shape != shape]
    if odd:
        raise PiffInputError(folder, f"DEMs differ in size from {_names([dems[0].path], folder)} "
                                     f"({shape[0]}x{shape[1]}); one dataset needs one grid: {_names(odd, folder)}")
    return dems


def _read_stats(path: Path) -> list[tuple[str, str, float, float]]:
    """Rows (dem name, Filename, min, max) of elevation_stats.csv; header case/space-insensitive."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        keys = {_header_key(k): k for k in reader.fieldnames or []}
        need = ("filename", "minelevation", "maxelevation")
        if not all(k in keys for k in need):
            raise PiffInputError(path, f"needs the columns Filename, Min Elevation, Max Elevation; has "
                                       f"{', '.join(reader.fieldnames or []) or 'none'}")
        rows = []
        for line, row in enumerate(reader, start=2):
            filename = (row[keys["filename"]] or "").strip()
            if not filename:
                continue
            try:
                lo, hi = float(row[keys["minelevation"]]), float(row[keys["maxelevation"]])
            except (TypeError, ValueError):
                raise PiffInputError(path, f"line {line}: Min/Max Elevation of {filename} are not numbers") from None
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise PiffInputError(path, f"line {line}: Min/Max Elevation of {filename} must be finite with "
                                           f"min <= max, got {lo} and {hi}")
            rows.append((Path(filename).stem if filename.lower().endswith(".png") else filename, filename, lo, hi))
    if not rows:
        raise PiffInputError(path, "lists no DEMs")
    names = [r[0] for r in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PiffInputError(path, f"lists DEMs more than once: {', '.join(dup)}")
    return rows


def _header_key(name: str | None) -> str:
    return re.sub(r"[\s_]+", "", (name or "").lower())


def _attach_dems(folder: Path, maps: list[MapFile], names: list[str]) -> None:
    """Set each map's ``dem`` to a DEM name: its name prefix, else the nearest parent folder
    named like a DEM, else the only DEM (when all maps share one prefix, or have none)."""
    lone = len(names) == 1 and len({m.dem for m in maps}) <= 1
    unresolved = []
    for m in maps:
        dem = _dem_of(m.path, m.dem, folder, names)
        if dem is None and lone:
            dem = names[0]
        if dem is None:
            unresolved.append(m.path)
        m.dem = dem
    if unresolved:
        raise PiffInputError(folder, f"maps of DEMs not listed in {STATS_CSV} (neither the <dem>_ name prefix "
                                     f"nor a parent folder names a DEM): {_names(unresolved, folder)}")


def _dem_of(path: Path, prefix: str | None, folder: Path, names: list[str]) -> str | None:
    if prefix in names:
        return prefix
    for parent in path.relative_to(folder).parents:
        if parent.name in names:
            return parent.name
    return None


# ----------------------------------------------------------------------------- rainfall
def _read_scenarios(path: Path) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Hyetographs by scenario id (one value per csv row) and the csv's ``time`` column."""
    from piff.hydro.storms import read_scenario_csv

    rain = read_scenario_csv(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        key = next((k for k in reader.fieldnames or [] if _header_key(k) == "time"), None)
        if key is None:
            raise PiffInputError(path, "has no time column")
        try:
            times = np.array([float(row[key]) for row in reader])
        except (TypeError, ValueError):
            raise PiffInputError(path, "the time column holds values that are not hours") from None
    if len(times) != len(next(iter(rain.values()))):
        raise PiffInputError(path, "the time column and the inflow_<id> columns have different numbers of rows")
    if len(times) == 0 or not np.array_equal(times, times[0] + np.arange(len(times))):
        raise PiffInputError(path, "the time column must count whole hours in steps of 1 (e.g. 1..24 or 0..24)")
    return rain, times


def rainfall_table(path: Path, rain_by_id: dict, times: np.ndarray, storm_ids: list[int], n_hours: int,
                   hours_found: int) -> tuple[np.ndarray, str]:
    """``rainfall (storm, time)`` with ``rainfall[:, 0] = 0`` and the rule used to place the rows.

    The rule (``hours_found`` = largest depth-map hour, the event length):
    first time 1: row ``time = k`` is the hour ending at ``k``; first time 0 and
    ``hours_found + 1`` rows: the same, with a dry time-0 row; first time 0 and ``hours_found``
    rows: row ``time = k`` is the hour starting at ``k``, stored at ``k + 1``.
    """
    first, n_rows = int(times[0]), len(times)
    values = np.stack([np.asarray(rain_by_id[i], np.float64) for i in storm_ids])
    if first == 1:
        rule, hyeto = "csv time k = hour ending at k", values
    elif first == 0 and n_rows == hours_found + 1:
        wet = [i for i, row in zip(storm_ids, values) if row[0] != 0]
        if wet:
            raise PiffInputError(path, f"the time column runs 0..{hours_found} like the depth maps, so the time-0 row "
                                       f"would be rain before the start, but it is not 0 for scenarios "
                                       f"{_ids(wet)}")
        rule, hyeto = "csv time k = hour ending at k (time-0 row dry)", values[:, 1:]
    elif first == 0 and n_rows == hours_found:
        rule, hyeto = "csv time k = hour starting at k (stored at k + 1)", values
    else:
        raise PiffInputError(path, f"the time column runs {first}..{first + n_rows - 1}, which does not match "
                                   f"depth maps of hours up to {hours_found} (expected 1..{hours_found}, "
                                   f"0..{hours_found} or 0..{hours_found - 1})")
    if hyeto.shape[1] < n_hours:
        raise PiffInputError(path, f"holds {hyeto.shape[1]} hours of rain, {n_hours} are imported")
    if not np.all(np.isfinite(hyeto)) or np.any(hyeto < 0):
        raise PiffInputError(path, "rainfall values must be finite and >= 0 mm/h")
    rain = np.zeros((len(storm_ids), n_hours + 1), np.float32)
    rain[:, 1:] = hyeto[:, :n_hours]
    return rain, rule


def _check_known_ids(folder: Path, rain_csv: Path, maps: list[MapFile], rain_by_id: dict) -> None:
    first_of = {}
    for m in maps:
        if m.storm not in rain_by_id:
            first_of.setdefault(m.storm, m.path)
    if first_of:
        raise PiffInputError(folder, f"scenario ids {_ids(first_of)} have maps but no inflow_<id> column in "
                                     f"{rain_csv.name}: {_names(list(first_of.values()), folder)}")


def _storm_ids(depth_maps: list[MapFile], rain_by_id: dict) -> list[int]:
    """Scenario ids with depth maps; csv scenarios without maps are left out (logged)."""
    ids = sorted({m.storm for m in depth_maps})
    unused = sorted(set(rain_by_id) - set(ids))
    if unused:
        log.info("scenarios without depth maps, not imported: %s", _ids(unused))
    return ids


def storm_group(rain: np.ndarray) -> str:
    """"uniform" if the intensity is constant (within 1 %, for csv rounding) over the wet hours,
    else "design". Real events cannot be told from design storms by their shape alone."""
    wet = rain[rain > 0]
    if wet.size == 0 or np.ptp(wet) <= UNIFORM_REL_TOL * wet.max():
        return "uniform"
    return "design"


def split_labels(storm_ids: list[int], test_ids, val_ids) -> list[str]:
    """"test" / "val" for the given scenario ids, "train" for the rest; ids must be imported."""
    test, val = {int(i) for i in test_ids}, {int(i) for i in val_ids}
    for option, ids in (("--test-ids", test), ("--val-ids", val)):
        unknown = ids - set(storm_ids)
        if unknown:
            raise PiffInputError(option, f"scenario ids {_ids(unknown)} are not among the imported scenarios "
                                         f"({_ids(storm_ids)})")
    both = test & val
    if both:
        raise PiffInputError("--val-ids", f"scenario ids {_ids(both)} are also test ids")
    return ["test" if i in test else "val" if i in val else "train" for i in storm_ids]


# ----------------------------------------------------------------------------- hourly maps
def _index_maps(folder: Path, maps: list[MapFile], names: list[str], storm_ids: list[int], n_hours: int,
                with_velocity: bool) -> dict[str, dict]:
    """``{var: {(dem index, storm index, hour): path}}`` for hours 0..n_hours, after checking
    that no map is given twice and that hours 1..n_hours are complete for every DEM and storm."""
    dem_row, storm_row = {n: i for i, n in enumerate(names)}, {s: i for i, s in enumerate(storm_ids)}
    index = {"depth": {}, "vx": {}, "vy": {}}
    groups, duplicates = defaultdict(list), []
    for m in maps:
        if m.hour > n_hours or m.storm not in storm_row:  # beyond the event, or velocity without depth
            continue
        key = (dem_row[m.dem], storm_row[m.storm], m.hour)
        if key in index[m.var]:
            duplicates += [index[m.var][key], m.path]
        index[m.var][key] = m.path
        groups[m.var, m.dem, m.storm].append(m)
    if duplicates:
        raise PiffInputError(folder, "maps given twice for the same DEM, scenario and hour: "
                                     f"{_names(duplicates, folder)}")
    missing = []
    for var in ("depth", "vx", "vy") if with_velocity else ("depth",):
        for dem in names:
            for sid in storm_ids:
                found = groups.get((var, dem, sid))
                if not found:
                    missing.append(f"{dem} RF{sid:02d} {var}: all hours")
                    continue
                have = {m.hour for m in found}
                missing += [found[0].sibling(h) for h in range(1, n_hours + 1) if h not in have]
    if missing:
        raise PiffInputError(folder, f"missing hourly maps (hours 1..{n_hours} are needed): {_names(missing, folder)}")
    return index


def _read_stack(paths: dict, shape: tuple, decode, problems: _Problems) -> np.ndarray:
    """A ``(dem, storm, time, y, x)`` float32 array of decoded maps; absent keys stay 0."""
    out = np.zeros(shape, np.float32)
    for key, path in sorted(paths.items()):
        q = problems.read(path)
        if q is not None:
            out[key] = decode(q)
    return out


# ----------------------------------------------------------------------------- SPM
def _read_spm_pngs(folder: Path, files: list[SpmFile], names: list[str], shape, full_scale: float,
                   problems: _Problems):
    """The SPM table ``(dem, bin, y, x)`` and its bins (mm) from SPM PNGs; None if there are none."""
    if not files:
        return None
    from piff.hydro.spm import SPM_BINS_MM

    by_dem, unresolved = defaultdict(dict), []
    for f in files:
        dem = names[0] if len(names) == 1 else _dem_of(f.path, f.tag, folder, names)
        if dem is None:
            unresolved.append(f.path)
        elif f.mm in by_dem[dem]:
            raise PiffInputError(folder, f"SPM maps given twice: {_names([by_dem[dem][f.mm], f.path], folder)}")
        else:
            by_dem[dem][f.mm] = f.path
    if unresolved:
        raise PiffInputError(folder, f"SPM PNGs of DEMs not listed in {STATS_CSV}: {_names(unresolved, folder)}")
    bins = np.asarray(SPM_BINS_MM)
    for dem in names:
        mm = sorted(by_dem.get(dem, {}))
        if not mm or not np.array_equal(mm, bins[:len(mm)]):
            raise PiffInputError(folder, f"SPM PNGs of DEM {dem} cover {_mm_list(mm)}; they must be the "
                                         f"consecutive bins {bins[0]:g}, {bins[1]:g}, ... mm (SPM_<mm>.png)")
    n_bins = {len(v) for v in by_dem.values()}
    if len(n_bins) > 1:
        raise PiffInputError(folder, "the DEMs have SPM PNGs for different numbers of rain bins")
    table = np.zeros((len(names), n_bins.pop(), *shape), np.float32)
    for d, dem in enumerate(names):
        for b, mm in enumerate(sorted(by_dem[dem])):
            q = problems.read(by_dem[dem][mm])
            if q is not None:
                table[d, b] = (1.0 - q) * full_scale
    return table, bins[:table.shape[1]].astype(np.float32), "png"


def _compute_spm(dems: list[Dem], dx: float, outlet_spec):
    """The fill-and-spill SPM table of every DEM (no SPM PNGs in the folder)."""
    from piff.hydro.spm import SPM_BINS_MM, FillAndSpill

    mask = outlet_spec.outlet_mask(dems[0].elevation.shape)
    table = np.stack([FillAndSpill(d.elevation, dx, mask, nodata_mask=None).table(SPM_BINS_MM) for d in dems])
    return table, np.asarray(SPM_BINS_MM, np.float32), f"fill_and_spill (outlets: {outlet_spec.to_string()})"


def _outlet_spec(outlets):
    """Outlet edges as a boundary spec: the named edges free, the others closed (None: all free)."""
    from piff.hydro.boundary import EDGES, parse_boundaries

    edges = EDGES if outlets is None else [outlets] if isinstance(outlets, str) else list(outlets)
    edges = [e.strip().lower() for item in edges for e in item.split(",") if e.strip()]
    bad = sorted(set(edges) - set(EDGES))
    if bad or not edges:
        raise PiffInputError("--outlets", f"expected a comma-separated list of {', '.join(EDGES)}, got {outlets!r}")
    return parse_boundaries(",".join(f"{e}=free" for e in dict.fromkeys(edges)))


# ----------------------------------------------------------------------------- assembly
def _assemble(folder: Path, dems: list[Dem], dx: float, storm_ids: list[int], rainfall: np.ndarray,
              splits: list[str], depth: np.ndarray, velocity: dict, spm, options: dict) -> xr.Dataset:
    """The dataset in the layout of :mod:`piff.data.format`, metadata as in preprocess.assemble."""
    from piff.data.preprocess import check_dataset

    ny, nx = dems[0].elevation.shape
    name = folder.resolve().name
    step = options["depth_full_scale_m"] / 255
    ds = fmt.new_dataset(ny, nx, dx, rainfall.shape[1] - 1, attrs={
        "title": f"piff dataset {name} (imported from PIFF PNGs)",
        "dataset_name": name,
        "config_hash": fmt.config_hash(options),
        "config_json": json.dumps(options, sort_keys=True),
        "piff_version": __version__,
        "git_revision": fmt.git_revision(),
        "source_folder": str(folder.resolve()),
        "depth_full_scale_m": options["depth_full_scale_m"],
        "quantisation_step_m": step,
        "quantisation_note": (f"depth and SPM PNGs are 8-bit: depths are quantised in steps of {step:.4g} m "
                              f"and clipped at {options['depth_full_scale_m']:g} m"),
        "physics_note": "no flux_x/flux_y (PNG data has none): the physics loss needs a simulated dataset",
    })
    ds.attrs["history"] += f"; imported from PNG folder {folder.resolve()}"
    ds = ds.assign_coords(storm=("storm", np.asarray(storm_ids, np.int32), {"long_name": "storm id"}),
                          dem=("dem", np.arange(len(dems), dtype=np.int32)))
    fmt.add_variable(ds, "elevation", np.stack([d.elevation for d in dems]))
    fmt.add_variable(ds, "nodata", np.zeros((len(dems), ny, nx), np.int8))  # PNG DEMs have no nodata
    fmt.add_variable(ds, "dem_name", np.array([d.name for d in dems]))
    fmt.add_variable(ds, "rainfall", rainfall)
    fmt.add_variable(ds, "storm_shape", np.array(["imported"] * len(storm_ids)))
    fmt.add_variable(ds, "storm_group", np.array([storm_group(r) for r in rainfall]))
    fmt.add_variable(ds, "storm_total", rainfall.sum(axis=1))  # mm/h over 1-h steps = mm
    fmt.add_variable(ds, "split", np.array(splits))
    fmt.add_variable(ds, "depth", depth)
    for var, values in velocity.items():
        fmt.add_variable(ds, var, values)
    table, bins, source = spm
    ds = ds.assign_coords(rain_bin=("rain_bin", bins, {
        "units": "mm", "long_name": "cumulative rainfall of the 24-h window (bin upper edge)"}))
    fmt.add_variable(ds, "spm", table)
    ds.attrs["spm_source"] = source
    check_dataset(ds, source=folder)
    return ds


# ----------------------------------------------------------------------------- PNG reading
class _Problems:
    """Unreadable PNGs and size mismatches, collected so that one error lists them all."""

    def __init__(self, folder: Path, shape: tuple[int, int] | None):
        self.folder, self.shape = folder, shape
        self.unreadable, self.wrong_size = [], []

    def read(self, path: Path) -> np.ndarray | None:
        """The PNG as ``p / pmax`` in [0, 1] (float64), or None after recording a problem."""
        try:
            q = read_png(path)
        except PiffInputError as err:
            self.unreadable.append(f"{_rel(path, self.folder)} ({err.problem})")
            return None
        if self.shape is not None and q.shape != self.shape:
            self.wrong_size.append(f"{_rel(path, self.folder)} ({q.shape[0]}x{q.shape[1]})")
            return None
        return q

    def raise_if_any(self) -> None:
        parts = []
        if self.unreadable:
            parts.append(f"unreadable PNGs: {_names(self.unreadable)}")
        if self.wrong_size:
            ny, nx = self.shape
            parts.append(f"PNGs whose size differs from the DEM ({ny}x{nx}): {_names(self.wrong_size)}")
        if parts:
            raise PiffInputError(self.folder, "; ".join(parts))


_PMAX = {"L": 255, "LA": 255, "RGB": 255, "RGBA": 255, "P": 255, "I;16": 65535, "I;16B": 65535,
         "I;16L": 65535, "I;16N": 65535, "I": 65535}


def read_png(path: Path) -> np.ndarray:
    """A PNG's first channel as ``p / pmax`` (float64 in [0, 1]); pmax from the bit depth.

    Palette PNGs are expanded to RGB first (so a grayscale palette gives its gray value);
    Pillow opens 16-bit grayscale PNGs as ``I;16`` (or ``I``), 8-bit ones as ``L``.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA")
            elif mode == "1":
                im, mode = im.convert("L"), "L"
            arr = np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise PiffInputError(path, f"not a readable PNG: {err}") from None
    if mode not in _PMAX:
        raise PiffInputError(path, f"unsupported PNG mode {mode!r}")
    if arr.ndim == 3:
        arr = arr[..., 0]  # RGB/RGBA/LA: PIFF's maps are gray stored as colour; use the first channel
    return arr.astype(np.float64) / _PMAX[mode]


# ----------------------------------------------------------------------------- messages
def _rel(path, folder: Path | None = None) -> str:
    if folder is not None and isinstance(path, Path):
        try:
            return path.relative_to(folder).as_posix()
        except ValueError:
            pass
    return str(path)


def _names(items, folder: Path | None = None, limit: int = SHOWN_FILES) -> str:
    """``a, b, c ... and N more``: at most ``limit`` files, relative to ``folder``."""
    names = [_rel(p, folder) for p in items]
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _ids(ids) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def _mm_list(mm: list[int]) -> str:
    if not mm:
        return "no bins"
    return ", ".join(f"{m}" for m in mm[:6]) + (f" ... {mm[-1]}" if len(mm) > 6 else "") + " mm"


def _check_positive(option: str, value) -> None:
    try:
        ok = float(value) > 0 and np.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PiffInputError(option, f"must be a positive number, got {value!r}")
