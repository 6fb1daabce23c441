"""Build-time projection grid: per cell, the centre-line vertices that start the search.

A uniform grid of square cells of side h covers the track's bounding box plus the band (the
widest half width plus a margin). Each cell stores two vertex indices:

- ``near``: the vertex nearest to the cell's centre;
- ``other``: the vertex nearest to the cell's centre on *another branch* of the track, i.e. at
  least ``branch_gap`` vertices away from ``near`` along the lap (hairpins, parallel straights,
  the crossing of a figure-eight); equal to ``near`` where no other branch lies within the band.

At query time a point looks at a window of ``window`` segments around each of the two
vertices, projects onto all of them and keeps the best (see ``lookup.py``). The window is
wide enough for any point of the cell: a point within h / sqrt(2) of the centre has its
nearest vertex on the same branch within about that arc length of ``near``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

#: The band reaches this far beyond the widest half width [m].
BAND_MARGIN_M = 6.0
#: Largest number of cells; the cell side grows with the track's extent beyond it.
MAX_CELLS = 1 << 20


@dataclass(frozen=True, eq=False)
class ProjectionGrid:
    origin: np.ndarray  #: (2,) lower-left corner of cell (0, 0) [m]
    cell_size: float  #: h [m]
    shape: tuple[int, int]  #: (nx, ny) cells; cell (ix, iy) is entry ix * ny + iy
    window: int  #: segments searched around each start vertex
    starts: np.ndarray  #: (nx * ny, 2) int64: first segment of the window around near, other
    band: float  #: cells within this distance of the centre line look for a second branch [m]

    @property
    def num_cells(self) -> int:
        return self.shape[0] * self.shape[1]


def build_grid(points: np.ndarray, max_half_width: float) -> ProjectionGrid:
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    spacing = float(np.linalg.norm(np.diff(points, axis=0), axis=1).mean())
    band = float(max_half_width) + BAND_MARGIN_M
    lo, hi = points.min(0) - band, points.max(0) + band
    area = float(np.prod(hi - lo))
    h = max(spacing, math.sqrt(area / MAX_CELLS))
    shape = tuple(int(v) for v in np.ceil((hi - lo) / h))
    nx, ny = shape
    ix, iy = np.divmod(np.arange(nx * ny), ny)
    centres = lo + (np.stack([ix, iy], axis=1) + 0.5) * h

    # Same-branch reach: a point of the cell is within h/sqrt(2) of the centre; its nearest
    # vertex lies within about twice that arc length (plus a segment) of the centre's.
    half = int(math.ceil(h * math.sqrt(2.0) / spacing)) + 2
    window = 2 * half + 1
    tree = cKDTree(points)
    dist, near = tree.query(centres, k=1, workers=-1)
    other = near.copy()

    in_band = np.flatnonzero(dist <= band + h)
    branch_gap = int(math.ceil(2.0 * (band + h) / spacing)) + window
    if in_band.size and n > 2 * branch_gap:
        k = min(n, branch_gap + 2)
        _, cand = tree.query(centres[in_band], k=k, workers=-1)
        gap = np.abs(cand - near[in_band, None])
        gap = np.minimum(gap, n - gap)
        far = gap > branch_gap
        has_other = far.any(axis=1)
        first_far = far.argmax(axis=1)
        rows = np.flatnonzero(has_other)
        other[in_band[rows]] = cand[rows, first_far[rows]]

    starts = np.stack([(near - half) % n, (other - half) % n], axis=1).astype(np.int64)
    return ProjectionGrid(
        origin=lo, cell_size=h, shape=(nx, ny), window=window, starts=starts, band=band
    )
