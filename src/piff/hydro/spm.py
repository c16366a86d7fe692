"""The SPM prior: a volume-conservative fill-and-spill of the DEM, and the coarse dynamic prior.

PIFF feeds a static "simplified inundation model" map (Yang et al., Water 2015, 7(2):438) as an
extra input channel: one depth map per 5 mm bin of the cumulative rainfall of the 24-h window
(5..720 mm, 144 maps), looked up per sample. :class:`FillAndSpill` re-creates that idea once per
DEM (docs/hydrology.md):

1. priority-flood fill (pyflwdir) with outlets only where water can leave (sea / free edges);
   closed walls are not outlets;
2. depressions = 8-connected components of ``filled > bed``; each has one spill level;
3. every cell drains (D8 on the filled DEM) to the first depression it meets, or to an outlet;
4. rain volume is routed through the depression tree (pour-point links), upstream first;
5. each depression holds its volume under one flat water level (sorted bed elevations,
   cumulative volumes, searchsorted); overflow spills to the next one; water reaching an
   outlet leaves the domain.

Stored + outflow == rain volume exactly (up to float64 rounding). A region of the DEM that no
outlet drains (a closed basin) keeps all its water: its lowest cell is a terminal lake with
unlimited capacity which, as it rises, merges the depressions whose spill level it passes.
Depths are flat within a depression even where it holds several sub-pits (the simplification
of the method: a depression fills as one bucket).

:func:`coarse_dynamic_prior` is the stronger prior: the real solver on a coarser grid, with a
volume-preserving water-level downscaling.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from piff.units import mm_to_m

SPM_BIN_MM = 5.0
SPM_BINS_MM = np.arange(5, 725, 5)  # 5, 10, ..., 720 mm: 144 bins
# A window sum within this many mm above a bin edge still counts as that bin: sums of float32
# hourly intensities carry rounding noise (e.g. 10.000001 must not become the 15 mm bin).
BIN_TOLERANCE_MM = 1e-4

_EIGHT = np.ones((3, 3), bool)
_LEAVES = 0  # node id of "left the domain through an outlet"


def _d8_offsets():
    """Row/column offsets of every pyflwdir D8 code (0 = pit, 247 = nodata: no offset)."""
    from pyflwdir import core_d8

    dr, dc = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for r in range(3):
        for c in range(3):
            code = int(core_d8._ds[r, c])
            dr[code], dc[code] = r - 1, c - 1
    return dr, dc


def priority_flood(elevation: np.ndarray, seeds: np.ndarray):
    """Depression-filled elevation and D8 directions (pyflwdir codes) with the priority flood
    starting only from the ``seeds`` cells (bool mask). NaN cells are nodata (never entered)."""
    from pyflwdir.dem import fill_depressions

    z = np.ascontiguousarray(elevation, dtype=np.float32)
    filled, d8 = fill_depressions(z, idxs_pit=np.flatnonzero(seeds).astype(np.int64), nodata=np.float32(np.nan))
    return filled, d8


class FillAndSpill:
    """Fill-and-spill of one DEM, built once; ``depth(rain_mm)`` and ``table(bins)`` are cheap.

    elevation : (ny, nx) bed elevation [m]; NaN or ``nodata_mask`` cells are outside the DEM
        (walls, no rain).
    dx : cell size [m].
    outlet_mask : (ny, nx) bool, cells through which water leaves (sea / free edge cells, e.g.
        ``BoundarySpec.outlet_mask``). Without any outlet the DEM is a closed basin.
    """

    def __init__(self, elevation, dx: float, outlet_mask, nodata_mask=None):
        z = np.asarray(elevation, dtype=np.float32)
        if z.ndim != 2:
            raise ValueError(f"elevation must be 2-D, got shape {z.shape}")
        self.shape = z.shape
        self.dx = float(dx)
        self.cell_area = self.dx * self.dx
        valid = np.isfinite(z)
        if nodata_mask is not None:
            valid &= ~np.asarray(nodata_mask, bool)
        self.valid = valid
        self.z = np.where(valid, z, np.nan).astype(np.float32)
        self.outlets = np.asarray(outlet_mask, bool) & valid

        self._find_closed_regions()
        self.filled, d8 = priority_flood(self.z, self.outlets | self._pseudo)
        self._build_downstream(d8)
        labels = ndimage.label(valid & (self.filled > self.z), structure=_EIGHT)[0]
        self._build_tree(labels)
        self._build_level_tables()
        self._build_lakes()

    # ---------------------------------------------------------------------------- building
    def _find_closed_regions(self):
        """Connected parts of the DEM without an outlet get a pseudo-outlet at their lowest cell
        (a terminal lake that keeps all the water)."""
        regions, n = ndimage.label(self.valid, structure=_EIGHT)
        drained = np.unique(regions[self.outlets])
        closed = np.setdiff1d(np.arange(1, n + 1), drained)
        self._pseudo = np.zeros(self.shape, bool)
        self.closed_regions = [np.flatnonzero(regions == r) for r in closed]
        for cells in self.closed_regions:
            self._pseudo.flat[cells[np.argmin(self.z.flat[cells])]] = True

    def _build_downstream(self, d8):
        """Flat index of each cell's D8 downstream cell (itself at pits and nodata)."""
        dr, dc = _d8_offsets()
        ny, nx = self.shape
        rows, cols = np.divmod(np.arange(ny * nx), nx)
        code = d8.ravel()
        pit = (code == 0) | (code == 247) | ~self.valid.ravel()
        down = (rows + dr[code]) * nx + cols + dc[code]
        self._down = np.where(pit, np.arange(ny * nx), down)

    def _build_tree(self, labels):
        """Depressions, the node each cell drains to, and the depression -> downstream links.

        Node ids: 0 = left through an outlet, 1..nd = depressions, nd+1.. = closed-region lakes.
        Links follow the D8 path from a depression's pour point; along it the filled surface
        never rises, so a link goes to a spill level <= its own. Ties (several depressions
        spilling at exactly one level through a flat) can make cycles: such groups are merged.
        """
        for _ in range(100):
            nd = int(labels.max())
            node = self._cell_nodes(labels, nd)
            sink = self._drain_to_terminal(node)
            down = self._depression_links(labels, nd, node, sink)
            src = np.flatnonzero((down[1:nd + 1] >= 1) & (down[1:nd + 1] <= nd))
            graph = coo_matrix((np.ones(src.size), (src, down[1 + src] - 1)), shape=(nd, nd))
            n_groups, group = connected_components(graph, directed=True, connection="strong")
            if n_groups == nd:
                break
            # merge every strongly connected group into one depression (same spill level)
            relabel = np.concatenate([[0], 1 + group])
            labels = relabel[labels]
        else:  # pragma: no cover - each pass merges at least two depressions
            raise RuntimeError("fill-and-spill: could not make the depression tree acyclic")

        self.labels = labels
        self.n_depressions = nd
        self.n_nodes = nd + 1 + len(self.closed_regions)
        self._sink = sink  # node each valid cell's rain goes to (-1 at nodata)
        self._link = down  # downstream node of each node (roots: itself)
        self.catchment_area = np.bincount(sink[sink >= 0], minlength=self.n_nodes) * self.cell_area
        self._order = self._upstream_first(down, nd)

    def _cell_nodes(self, labels, nd):
        """Terminal node of each cell: its depression, outlet (0) or closed-region lake; -1 if
        the cell is not a terminal (its water moves on downstream); -2 at nodata."""
        node = np.full(labels.size, -1, np.int64)
        flat = labels.ravel()
        node[flat > 0] = flat[flat > 0]
        node[self.outlets.ravel()] = _LEAVES
        for k, cells in enumerate(self.closed_regions):
            pit = cells[self._pseudo.flat[cells]]
            node[pit] = nd + 1 + k
        node[~self.valid.ravel()] = -2
        return node

    def _drain_to_terminal(self, node):
        """Node reached by each cell following D8 (pointer jumping: log2(path length) passes)."""
        nxt = np.where(node != -1, np.arange(node.size), self._down)
        while True:
            nxt2 = nxt[nxt]
            if np.array_equal(nxt2, nxt):
                break
            nxt = nxt2
        sink = node[nxt]
        sink[node == -2] = -1
        if np.any(sink[self.valid.ravel()] < 0):  # pragma: no cover - every valid cell is reached by the flood
            raise RuntimeError("fill-and-spill: a valid cell drains nowhere")
        return sink

    def _depression_links(self, labels, nd, node, sink):
        """Downstream node of every node (index = node id; roots point to themselves).

        A depression's exits are its cells whose D8 target lies outside it; each exit leads to the
        node its target drains to. The lowest such node is taken (outlets and lakes count as
        lowest), never the depression itself.
        """
        flat = labels.ravel()
        n_nodes = nd + 1 + len(self.closed_regions)
        down = np.arange(n_nodes)
        cells = np.flatnonzero(flat > 0)
        target = self._down[cells]
        exits = flat[target] != flat[cells]
        src, dst = flat[cells[exits]], sink[target[exits]]
        keep = dst != src
        src, dst = src[keep], dst[keep]
        spill = self._spill_levels(labels, nd)
        key = np.where((dst >= 1) & (dst <= nd), spill[np.clip(dst, 0, nd)], -np.inf)
        order = np.lexsort((dst, key, src))  # per source: lowest key first
        src, dst = src[order], dst[order]
        first = np.r_[True, src[1:] != src[:-1]] if src.size else np.zeros(0, bool)
        down[src[first]] = dst[first]
        missing = np.setdiff1d(np.arange(1, nd + 1), src)
        if missing.size:  # pragma: no cover - the flood entered every depression from outside
            raise RuntimeError(f"fill-and-spill: depression {missing[0]} has no pour point")
        return down

    def _spill_levels(self, labels, nd):
        """Spill level (filled elevation) of each depression, index = node id (0: unused)."""
        spill = np.full(nd + 1, -np.inf)
        if nd:
            spill[1:] = ndimage.maximum(self.filled, labels, np.arange(1, nd + 1))
        return spill

    @staticmethod
    def _upstream_first(down, nd):
        """Depression ids grouped by distance (in links) to a root, farthest first: processing
        them in this order routes every spill before its receiver is settled."""
        level = np.zeros(down.size, np.int64)
        is_dep = np.zeros(down.size, bool)
        is_dep[1:nd + 1] = True
        for _ in range(nd + 1):
            new = np.where(is_dep, level[down] + 1, 0)
            if np.array_equal(new, level):
                break
            level = new
        deps = np.arange(1, nd + 1)
        return [deps[level[1:nd + 1] == k] for k in range(int(level.max(initial=0)), 0, -1)]

    def _build_level_tables(self):
        """Per depression: sorted bed elevations and the stored volume at each of them
        (breakpoints of the piecewise-linear volume(level) curve), concatenated with offsets so
        one searchsorted finds every depression's level at once."""
        nd = self.n_depressions
        flat = self.labels.ravel()
        cells = np.flatnonzero(flat > 0)
        lab = flat[cells]
        zc = self.z.ravel()[cells].astype(np.float64)
        order = np.lexsort((zc, lab))
        self._dep_cells, self._dep_lab = cells, lab
        zs, ls = zc[order], lab[order]
        counts = np.bincount(ls, minlength=nd + 1)[1:]
        starts = np.cumsum(counts) - counts
        k = np.arange(zs.size) - np.repeat(starts, counts)  # rank within the depression
        csum = np.cumsum(zs)
        below = csum - zs - np.repeat(csum[starts] - zs[starts], counts)  # sum of lower beds
        vol = self.cell_area * (k * zs - below)
        spill = self._spill_levels(self.labels, nd)
        self.spill_level = spill
        self.capacity = np.zeros(self.n_nodes)
        self.capacity[1:nd + 1] = self.cell_area * (counts * spill[1:] - np.bincount(ls, zs, nd + 1)[1:])
        offset = np.cumsum(self.capacity[1:nd + 1] + 1.0) - (self.capacity[1:nd + 1] + 1.0)
        self._zs, self._rank, self._vol = zs, k, vol
        self._key = vol + np.repeat(offset, counts)
        self._offset, self._starts = offset, starts

    # ---------------------------------------------------------------------------- routing
    def _route(self, rain_m: np.ndarray):
        """Volumes [m3] per node for rain depths ``rain_m`` (nb,): (stored (nodes, nb), inflow)."""
        inflow = self.catchment_area[:, None] * rain_m[None, :]
        stored = np.zeros_like(inflow)
        for deps in self._order:
            stored[deps] = np.minimum(inflow[deps], self.capacity[deps, None])
            np.add.at(inflow, self._link[deps], inflow[deps] - stored[deps])
        return stored, inflow

    def _levels(self, stored):
        """Flat water level [m] of each depression (nd, nb) holding ``stored`` (nodes, nb) m3."""
        nd = self.n_depressions
        if nd == 0:
            return np.zeros((0, stored.shape[1]))
        v = stored[1:nd + 1]
        q = v + self._offset[:, None]
        idx = np.searchsorted(self._key, q, side="right") - 1
        idx = np.maximum(idx, self._starts[:, None])
        return self._zs[idx] + (v - self._vol[idx]) / (self.cell_area * (self._rank[idx] + 1))

    def _maps(self, rain_mm) -> tuple[np.ndarray, dict]:
        rain_m = mm_to_m(np.atleast_1d(np.asarray(rain_mm, np.float64)))
        if np.any(~np.isfinite(rain_m)) or np.any(rain_m < 0):
            raise ValueError("rainfall depths must be finite and >= 0 mm")
        stored, inflow = self._route(rain_m)
        nd = self.n_depressions
        # closed regions first: a rising lake may top up a depression (changes its stored volume)
        lakes = [self._settle_lake(k, inflow[nd + 1 + k], stored) for k in range(len(self.closed_regions))]
        levels = self._levels(stored)
        nb = rain_m.size
        depth = np.zeros((nb, self.z.size), np.float64)
        zc = self.z.ravel()[self._dep_cells]
        depth[:, self._dep_cells] = np.maximum(levels[self._dep_lab - 1].T - zc, 0.0)
        for k, (level, n_merged) in enumerate(lakes):
            self._lake_depth(depth, k, level, n_merged)
        budget = {"rain_m3": self.catchment_area.sum() * rain_m, "outflow_m3": inflow[_LEAVES],
                  "stored_m3": depth.sum(axis=1) * self.cell_area}
        return depth.reshape((nb,) + self.shape), budget

    def _build_lakes(self):
        """Per closed region: the volume curve of its filled surface and its depressions in
        ascending spill level (the order in which a rising terminal lake reaches them)."""
        self._lakes = []
        flat = self.labels.ravel()
        for cells in self.closed_regions:
            f = np.sort(self.filled.ravel()[cells].astype(np.float64))
            k = np.arange(f.size)
            vol_f = self.cell_area * (k * f - (np.cumsum(f) - f))
            deps = np.unique(flat[cells])
            deps = deps[deps > 0]
            deps = deps[np.argsort(self.spill_level[deps], kind="stable")]
            self._lakes.append({"cells": cells, "f": f, "vol_f": vol_f, "deps": deps})

    def _lake_volume_at(self, lake, level):
        """Volume [m3] of water above the filled surface of a region below ``level`` (array)."""
        f, vol_f = lake["f"], lake["vol_f"]
        i = np.maximum(np.searchsorted(f, level, side="right") - 1, 0)
        return np.where(level > f[0], vol_f[i] + self.cell_area * (i + 1) * (level - f[i]), 0.0)

    def _settle_lake(self, k, volume, stored):
        """Terminal lake of closed region ``k`` for lake inflows ``volume`` (nb,) m3.

        The lake rises over the filled surface; when it reaches the spill level S of the next
        depression (ascending S) it pours into it: a depression it fills up joins the lake (its
        water and its bed; ``n_merged`` counts them), a depression it cannot fill gets the rest
        of the water (``stored`` is updated in place) and the lake stands at S. Vectorised over
        bins: depression i joins iff V + sum(stored[:i+1]) >= V_f(S_i) + sum(cap[:i+1]).
        Returns (lake level (nb,) m, n_merged (nb,)).
        """
        lake = self._lakes[k]
        deps = lake["deps"]
        S, cap = self.spill_level[deps], self.capacity[deps]
        sto = stored[deps]  # (n, nb)
        need = self._lake_volume_at(lake, S)[:, None] + np.cumsum(cap)[:, None]
        have = volume[None, :] + np.cumsum(sto, axis=0)
        nb = volume.size
        joins = np.vstack([have >= need, np.zeros((1, nb), bool)])  # sentinel: stop after the last
        n_merged = np.argmin(joins, axis=0)  # first depression that does not join
        level = np.zeros(nb)
        for b in range(nb):
            m = n_merged[b]
            if volume[b] <= 0 and m == 0:
                level[b] = -np.inf  # no lake
                continue
            # water the lake holds above the filled surface: all of it, minus the merged capacity
            above = volume[b] + sto[:m, b].sum() - cap[:m].sum()
            if m < deps.size and above >= self._lake_volume_at(lake, S[m]):
                stored[deps[m], b] += above - self._lake_volume_at(lake, S[m])  # tops up depression m
                level[b] = S[m]
            else:
                i = int(np.searchsorted(lake["vol_f"], max(above, 0.0), side="right")) - 1
                level[b] = lake["f"][i] + (max(above, 0.0) - lake["vol_f"][i]) / (self.cell_area * (i + 1))
        return level, n_merged

    def _lake_depth(self, depth, k, level, n_merged):
        """Write the lake depth of region ``k`` into ``depth`` (nb, cells) in place: flat level
        over the non-depression cells and the merged depressions, which it replaces."""
        lake = self._lakes[k]
        cells, deps = lake["cells"], lake["deps"]
        lab = self.labels.ravel()[cells]
        z = self.z.ravel()[cells].astype(np.float64)
        rank = np.full(self.n_nodes, deps.size)
        rank[deps] = np.arange(deps.size)
        for b in np.flatnonzero(np.isfinite(level)):
            in_lake = (lab == 0) | (rank[lab] < n_merged[b])
            depth[b, cells[in_lake]] = np.maximum(level[b] - z[in_lake], 0.0)

    # ---------------------------------------------------------------------------- public
    def depth(self, rain_mm: float) -> np.ndarray:
        """(ny, nx) float32 water depth [m] after ``rain_mm`` mm of rain on every valid cell."""
        return self._maps([rain_mm])[0][0].astype(np.float32)

    def table(self, bins_mm=SPM_BINS_MM) -> np.ndarray:
        """(nbins, ny, nx) float32 depth maps [m], one per cumulative rainfall in ``bins_mm``."""
        return self._maps(bins_mm)[0].astype(np.float32)

    def budget(self, rain_mm) -> dict:
        """Water balance [m3] for rainfall depth(s) ``rain_mm``: rain, outflow, stored (float64)."""
        return self._maps(rain_mm)[1]


# -------------------------------------------------------------------------------- lookup
def spm_bin(window_sum_mm):
    """SPM bin [mm] of a 24-h window sum: ``ceil(x / 5) * 5`` clipped to [5, 720].

    Works on scalars, numpy arrays and torch tensors (returns the same kind). A dry window
    (0 mm) maps to the 5 mm bin, as in docs/architecture.md; callers wanting an all-dry prior
    for a dry window test ``window_sum == 0`` themselves. Sums within BIN_TOLERANCE_MM above a
    bin edge stay in that bin (float rounding).
    """
    if _is_torch(window_sum_mm):
        import torch

        x = torch.ceil((window_sum_mm - BIN_TOLERANCE_MM) / SPM_BIN_MM) * SPM_BIN_MM
        return torch.clamp(x, SPM_BINS_MM[0], SPM_BINS_MM[-1])
    x = np.ceil((np.asarray(window_sum_mm, np.float64) - BIN_TOLERANCE_MM) / SPM_BIN_MM) * SPM_BIN_MM
    out = np.clip(x, SPM_BINS_MM[0], SPM_BINS_MM[-1])
    return float(out) if out.ndim == 0 else out


def spm_bin_index(window_sum_mm):
    """Index into the (144, ny, nx) table of :data:`SPM_BINS_MM` for a window sum [mm]:
    ``spm_bin(x) / 5 - 1`` (0 for a dry window, see :func:`spm_bin`). Integer numpy array / int,
    or a torch int64 tensor for tensor input."""
    b = spm_bin(window_sum_mm)
    if _is_torch(b):
        import torch

        return torch.round(b / SPM_BIN_MM).to(torch.int64) - 1
    idx = np.rint(np.asarray(b) / SPM_BIN_MM).astype(np.int64) - 1
    return int(idx) if idx.ndim == 0 else idx


def spm_lookup(table: np.ndarray, window_sum_mm, bins_mm=SPM_BINS_MM) -> np.ndarray:
    """The prior map of each 24-h window sum [mm]: the table's map of the sum's bin
    (:func:`spm_bin`), and an all-dry map for a window without rain (docs/architecture.md).

    ``table`` (n_bins, ny, nx) holds one map per value of ``bins_mm`` (ascending; a sum whose
    bin the table lacks takes the next larger bin, the last one beyond it; None: SPM_BINS_MM). Returns float32
    (ny, nx) for a scalar sum, (..., ny, nx) for an array of sums. The one lookup used by the
    torch Dataset, ``piff predict`` and the figures.
    """
    sums = np.asarray(window_sum_mm, np.float64)
    table = np.asarray(table)
    bins_mm = SPM_BINS_MM if bins_mm is None else bins_mm
    rows = np.minimum(np.searchsorted(np.asarray(bins_mm, np.float64), spm_bin(sums)), table.shape[0] - 1)
    maps = table[rows].astype(np.float32)
    return np.where((sums > 0)[..., None, None], maps, np.float32(0.0))


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


# --------------------------------------------------------------------------------------------
# coarse dynamic prior


def block_mean(a: np.ndarray, factor: int, valid: np.ndarray | None = None):
    """Block mean of ``a`` over ``factor x factor`` blocks, ignoring invalid cells.
    Returns (coarse mean (NaN where a block has no valid cell), valid-cell count per block)."""
    ny, nx = a.shape
    valid = np.isfinite(a) if valid is None else valid & np.isfinite(a)
    blocks = (ny // factor, factor, nx // factor, factor)
    s = np.where(valid, a, 0.0).reshape(blocks).sum(axis=(1, 3))
    n = valid.reshape(blocks).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan), n


def downscale_depth(coarse_depth: np.ndarray, coarse_bed: np.ndarray, fine_bed: np.ndarray,
                    factor: int, valid: np.ndarray) -> np.ndarray:
    """Volume-preserving water-level downscaling of (..., cy, cx) coarse depths [m] to the fine
    grid: within each coarse cell the fine depth is ``max(level - fine bed, 0)`` for the coarse
    water level ``coarse bed + coarse depth``, rescaled so the coarse cell's volume
    (depth x coarse cell area) is kept exactly on its valid fine cells."""
    up = lambda a: np.repeat(np.repeat(a, factor, axis=-2), factor, axis=-1)
    level = up(coarse_bed + coarse_depth)
    fine = np.where(valid, np.maximum(level - np.nan_to_num(fine_bed), 0.0), 0.0)
    lead = fine.shape[:-2]
    cy, cx = coarse_depth.shape[-2:]
    block_sum = fine.reshape(lead + (cy, factor, cx, factor)).sum(axis=(-3, -1))
    target = np.nan_to_num(coarse_depth) * factor * factor  # fine-cell depth sum holding the volume
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(block_sum > 0, target / block_sum, 0.0)
    return fine * up(scale)


def coarse_dynamic_prior(elevation, dx: float, rain_mm_per_h, boundaries, factor: int = 4, *,
                         nodata_mask=None, **solver_kwargs) -> np.ndarray:
    """Depth maps [m] from the local-inertial solver run on a ``factor``-times coarser grid.

    The DEM is block-mean coarsened (fine nodata cells ignored; a block with no valid cell is
    nodata; a DEM whose size is not a multiple of ``factor`` is padded with nodata), the solver
    (:func:`piff.hydro.solver.simulate`, with ``boundaries`` and ``solver_kwargs`` such as
    ``manning``) runs on it, and every hourly coarse depth is downscaled with
    :func:`downscale_depth`. Returns (T+1, ny, nx) float32 for a (T,) hyetograph, or
    (S, T+1, ny, nx) for (S, T).
    """
    from piff.hydro.solver import simulate

    z = np.asarray(elevation, np.float64)
    valid = np.isfinite(z) if nodata_mask is None else np.isfinite(z) & ~np.asarray(nodata_mask, bool)
    ny, nx = z.shape
    factor = int(factor)
    py, px = -ny % factor, -nx % factor
    zp = np.pad(np.where(valid, z, np.nan), ((0, py), (0, px)), constant_values=np.nan)
    vp = np.pad(valid, ((0, py), (0, px)), constant_values=False)
    coarse, count = block_mean(zp, factor, vp)
    coarse_mask = count == 0
    rain = np.asarray(rain_mm_per_h, np.float64)
    res = simulate(np.where(coarse_mask, np.nan, coarse), dx * factor, rain, boundaries=boundaries,
                   nodata_mask=coarse_mask if coarse_mask.any() else None, **solver_kwargs)
    # a block partly outside the DEM: its volume goes to its valid fine cells only
    fine = downscale_depth(res.depth.astype(np.float64), np.nan_to_num(coarse), zp, factor, vp)
    fine = fine[..., :ny, :nx].astype(np.float32)
    return fine[0] if rain.ndim == 1 else fine
