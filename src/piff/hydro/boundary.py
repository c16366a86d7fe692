"""Boundary conditions of the flood solver, one per domain edge.

Edges are ``left``, ``right``, ``top``, ``bottom`` (row 0 is the top edge, see
docs/architecture.md). Each edge is one of:

``closed``
    a wall: the boundary-face discharge is 0.
``sea:<stage_m>``
    a fixed water level: a ghost cell outside the edge holds the free surface at
    ``stage_m`` metres (or its bed, if the stage is below it); the ghost bed equals the bed of
    the boundary cell. Water can flow out to the sea and in from it.
``free``
    free outflow: normal-depth (Manning) discharge using the larger of the water-surface
    and bed slopes towards the edge, capped at critical flow ``h sqrt(g h)``; outflow only.
    A flat surface on a flat bed therefore does not drain through a free edge.

Spec strings look like ``"left=sea:0.0,right=free"``; edges not named are closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from piff.errors import PiffInputError

EDGES = ("left", "right", "top", "bottom")
KINDS = ("closed", "sea", "free")
_OPTION = "--boundary"


@dataclass(frozen=True)
class EdgeCondition:
    """Boundary condition of one edge: ``kind`` in KINDS, ``stage`` in metres (sea only)."""

    kind: str = "closed"
    stage: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise PiffInputError(_OPTION, f"unknown boundary kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if (self.kind == "sea") != (self.stage is not None):
            raise PiffInputError(_OPTION, "a stage is given for sea edges and only for them")
        if self.stage is not None and not math.isfinite(self.stage):
            raise PiffInputError(_OPTION, f"sea stage must be a finite number of metres, got {self.stage!r}")

    def to_string(self) -> str:
        return f"sea:{self.stage:g}" if self.kind == "sea" else self.kind


@dataclass(frozen=True)
class BoundarySpec:
    """Boundary condition of each domain edge (all closed by default)."""

    edges: dict = field(default_factory=lambda: {e: EdgeCondition() for e in EDGES})

    def __post_init__(self):
        unknown = set(self.edges) - set(EDGES)
        if unknown:
            raise PiffInputError(_OPTION, f"unknown edge {sorted(unknown)[0]!r} (expected one of {', '.join(EDGES)})")
        # fill in the edges not named: closed
        full = {e: self.edges.get(e, EdgeCondition()) for e in EDGES}
        object.__setattr__(self, "edges", full)

    def __getitem__(self, edge: str) -> EdgeCondition:
        return self.edges[edge]

    def to_string(self) -> str:
        """Canonical spec string, e.g. ``"left=sea:0,right=free,top=closed,bottom=closed"``."""
        return ",".join(f"{e}={self.edges[e].to_string()}" for e in EDGES)

    @property
    def all_closed(self) -> bool:
        return all(c.kind == "closed" for c in self.edges.values())

    def outlet_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Bool ``(ny, nx)`` mask of the edge cells through which water can leave (sea or free edges)."""
        ny, nx = shape
        mask = np.zeros((ny, nx), dtype=bool)
        rows_cols = {"left": (slice(None), 0), "right": (slice(None), nx - 1),
                     "top": (0, slice(None)), "bottom": (ny - 1, slice(None))}
        for edge, cond in self.edges.items():
            if cond.kind in ("sea", "free"):
                mask[rows_cols[edge]] = True
        return mask


def parse_boundaries(spec: str | BoundarySpec | None) -> BoundarySpec:
    """Parse ``"left=sea:0.0,right=free,top=closed"`` into a BoundarySpec.

    ``None`` or an empty string means all edges closed. Raises ``PiffInputError("--boundary", ...)``
    for an unknown edge or kind, a repeated edge, or a stage that is not a finite number.
    """
    if isinstance(spec, BoundarySpec):
        return spec
    if spec is None or not spec.strip():
        return BoundarySpec()
    edges = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        edge, sep, value = item.partition("=")
        edge, value = edge.strip().lower(), value.strip().lower()
        if not sep or edge not in EDGES:
            raise PiffInputError(_OPTION, f"{item!r} is not EDGE=KIND with EDGE one of {', '.join(EDGES)}")
        if edge in edges:
            raise PiffInputError(_OPTION, f"edge {edge!r} is given twice")
        kind, _, stage_text = value.partition(":")
        if kind == "sea":
            try:
                stage = float(stage_text)
            except ValueError:
                raise PiffInputError(_OPTION,
                                     f"sea stage in {item!r} is not a number of metres (use sea:<stage_m>)") from None
            edges[edge] = EdgeCondition("sea", stage)
        elif kind in ("closed", "free") and not stage_text:
            edges[edge] = EdgeCondition(kind)
        else:
            raise PiffInputError(_OPTION,
                                 f"unknown boundary {value!r} in {item!r} (expected closed, free or sea:<stage_m>)")
    return BoundarySpec(edges)


def outlet_mask(shape: tuple[int, int], spec: str | BoundarySpec | None = None) -> np.ndarray:
    """Module-level shortcut for ``parse_boundaries(spec).outlet_mask(shape)``."""
    return parse_boundaries(spec).outlet_mask(shape)
