"""Independent solvers used as oracles by the tests and by bench/solver.py.

``run_landlab_overland`` runs landlab's OverlandFlow (de Almeida 2012 local-inertial scheme,
Cython) on a piff DEM with closed edges and returns hourly depths in piff's layout. landlab is an
optional test dependency (it imports on Python 3.11 with ``requireit<0.9``), so it is imported
inside the function.

Differences from piff's solver worth knowing when comparing: landlab clips negative depths
(small mass gain), keeps a film ``h_init`` (1e-5 m) everywhere, uses g = 9.80665 and its own
time-step rule (alpha dx / sqrt(g max h) with its own default alpha 0.7).
"""

from __future__ import annotations

import time

import numpy as np

from piff.units import MM_PER_H_TO_M_PER_S, SECONDS_PER_HOUR


def run_landlab_overland(elevation, dx, rain_mm_per_h, *, manning=0.03, alpha=0.7, theta=0.8,
                         steep_slopes=True, h_init=1e-5):
    """Run landlab OverlandFlow with closed edges for ``len(rain_mm_per_h)`` hours.

    elevation : (ny, nx) m, row 0 = north (piff layout); dx : m; rain : (T,) mm/h per hour;
    manning : scalar n. Returns ``(depth (T+1, ny, nx) float64 m, wall_time_s)``; depth[0] is the
    initial film.

    landlab's perimeter nodes are boundary nodes, not cells, so the DEM is embedded in a grid one
    node larger on every side whose perimeter is closed: landlab's core nodes are piff's cells.
    """
    from landlab import RasterModelGrid
    from landlab.components import OverlandFlow

    z = np.asarray(elevation, dtype=np.float64)
    ny, nx = z.shape
    grid = RasterModelGrid((ny + 2, nx + 2), xy_spacing=float(dx))
    z_pad = np.pad(z, 1, mode="edge")
    # landlab node rows start at the bottom (south): flip piff's north-up rows
    grid.add_field("topographic__elevation", np.flipud(z_pad).ravel().copy(), at="node")
    grid.add_field("surface_water__depth", np.full(grid.number_of_nodes, h_init), at="node")
    grid.set_closed_boundaries_at_grid_edges(True, True, True, True)
    of = OverlandFlow(grid, h_init=h_init, alpha=alpha, mannings_n=float(manning), theta=theta,
                      steep_slopes=steep_slopes)

    def depth_now():
        return np.flipud(grid.at_node["surface_water__depth"].reshape(ny + 2, nx + 2))[1:-1, 1:-1].copy()

    rain = np.asarray(rain_mm_per_h, dtype=np.float64)
    out = np.empty((len(rain) + 1, ny, nx))
    out[0] = depth_now()
    t0 = time.perf_counter()
    for k, r in enumerate(rain, start=1):
        of.rainfall_intensity = r * MM_PER_H_TO_M_PER_S
        of.overland_flow(dt=SECONDS_PER_HOUR)  # sub-cycles internally with its own stable dt
        out[k] = depth_now()
    return out, time.perf_counter() - t0
