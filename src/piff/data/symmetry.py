"""Grid symmetries of a flood problem: the flips and transposes under which a DEM's boundary
conditions stay the same, and their action on a training sample.

The shallow-water equations on a grid of square cells, with spatially uniform rain, have the
symmetries of the square (the dihedral group D4: 8 elements): if the terrain and its boundary
conditions are flipped or transposed, the depth is flipped or transposed with them and the
face discharges are carried along, with their sign reversed along a flipped axis. The network
never sees the boundary conditions, so a training map may only be transformed by an element
that maps every edge onto an edge with the same condition: for the demo's synthetic DEMs (sea
on the left, walls elsewhere) that is the identity and the top-bottom flip; for a window with
free outflow on every edge, all 8. docs/architecture.md, "Symmetry augmentation", says why this
is exact; ``tests/test_symmetry.py`` checks it against the solver.

An element is ``(transpose, flip_rows, flip_cols)``, applied in that order to a map whose last
two dims are (rows, columns).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch

from piff.hydro.boundary import parse_boundaries

# the sample keys that are maps (.., H, W), and the two face-discharge fields (docs of
# piff.data.torch_dataset): x faces (.., H, W+1), y faces (.., H+1, W), positive towards +column / +row
MAP_KEYS = ("depth", "depth_prev", "elevation", "prior", "loss")
FLUX_X, FLUX_Y = "flux_x", "flux_y"


class GridSymmetry(NamedTuple):
    transpose: bool
    flip_rows: bool
    flip_cols: bool

    def edge_image(self, edge: str) -> str:
        """The edge that ``edge`` lands on (row 0 is the top edge)."""
        if self.transpose:
            edge = {"left": "top", "top": "left", "right": "bottom", "bottom": "right"}[edge]
        if self.flip_rows:
            edge = {"top": "bottom", "bottom": "top"}.get(edge, edge)
        if self.flip_cols:
            edge = {"left": "right", "right": "left"}.get(edge, edge)
        return edge


IDENTITY = GridSymmetry(False, False, False)
# the identity first, so that a draw in [0, 1/n) keeps a map as it is
ALL = tuple(GridSymmetry(*e) for e in itertools.product((False, True), repeat=3))


def boundary_symmetries(boundary: str, shape) -> tuple[GridSymmetry, ...]:
    """The elements that keep every edge's condition of ``boundary`` (a piff boundary spec
    string) on a grid of ``shape`` (rows, columns): transposes only on a square grid."""
    edges = parse_boundaries(boundary).edges
    square = shape[0] == shape[1]
    return tuple(g for g in ALL if (square or not g.transpose)
                 and all(edges[g.edge_image(e)] == edges[e] for e in edges))


def transform_map(a: torch.Tensor, g: GridSymmetry) -> torch.Tensor:
    if g.transpose:
        a = a.transpose(-1, -2)
    dims = [d for d, flip in ((-2, g.flip_rows), (-1, g.flip_cols)) if flip]
    return a.flip(dims) if dims else a


def transform_fluxes(flux_x: torch.Tensor, flux_y: torch.Tensor, g: GridSymmetry):
    """Face discharges of the transformed grid: a transpose swaps the x and y faces (the
    +column direction becomes +row, so no sign changes); a flip reverses the faces along its
    axis and the sign of the discharge across them."""
    if g.transpose:
        flux_x, flux_y = flux_y.transpose(-1, -2), flux_x.transpose(-1, -2)
    if g.flip_rows:
        flux_x, flux_y = flux_x.flip(-2), -flux_y.flip(-2)
    if g.flip_cols:
        flux_x, flux_y = -flux_x.flip(-1), flux_y.flip(-1)
    return flux_x, flux_y


def transform_sample(sample: dict, g: GridSymmetry) -> dict:
    """A training sample (piff.data.torch_dataset) as it is on the transformed grid; scalars
    (rain, hour, cell size, ids) are unchanged."""
    if g == IDENTITY:
        return sample
    out = dict(sample)
    for k in MAP_KEYS:
        if k in out:
            out[k] = transform_map(out[k], g).contiguous()
    if FLUX_X in out:
        fx, fy = transform_fluxes(out[FLUX_X], out[FLUX_Y], g)
        out[FLUX_X], out[FLUX_Y] = fx.contiguous(), fy.contiguous()
    return out
