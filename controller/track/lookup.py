"""Batched projection of points onto a track, in torch: O(1) per point, compile-friendly.

Each point finds its grid cell (``grid.py``), which names one centre-line segment on each
of up to two branches of the track; the point is projected onto both segments' lines and keeps
one: the nearer, or, when a heading is given, the one minimising

    |lateral| + branch_penalty * (1 - cos(yaw - segment heading))

so that at a figure-eight's crossing or between the two sides of a hairpin a car stays on the
branch it is driving along. Only gathers from a small per-segment table and elementwise
arithmetic, no reductions or data-dependent control flow: ``torch.compile`` fuses it into one
loop inside the rollouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from controller.track.track import Track


class Projection(NamedTuple):
    """Where points lie relative to the track (all of the points' shape)."""

    s: Tensor  #: arc length of the projection, in [0, length) [m]
    lateral: Tensor  #: signed offset from the centre line, left positive [m]
    heading: Tensor  #: centre-line tangent angle there [rad]
    curvature: Tensor  #: d heading / ds there, left turn positive [1/m]
    width_left: Tensor  #: centre line to left edge there [m]
    width_right: Tensor  #: centre line to right edge there [m]


# Columns of the per-segment table.
_AX, _AY, _TX, _TY, _S0, _LEN, _HEAD, _DHEAD, _WL, _DWL, _WR, _DWR = range(12)


class TrackLookup:
    """Tensors of one track on one device and dtype; see the module docstring."""

    def __init__(self, track: "Track", dtype: torch.dtype, device: torch.device | str):
        grid = track.grid
        pts = np.asarray(track.points, dtype=np.float64)
        seg = np.roll(pts, -1, axis=0) - pts
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        heading = np.asarray(track.heading, dtype=np.float64)
        wl, wr = np.asarray(track.width_left), np.asarray(track.width_right)
        table = np.zeros((len(pts), 12))
        table[:, [_AX, _AY]] = pts
        table[:, [_TX, _TY]] = seg / seg_len[:, None]
        table[:, _S0] = track.s
        table[:, _LEN] = seg_len
        table[:, _HEAD] = heading
        table[:, _DHEAD] = np.angle(np.exp(1j * (np.roll(heading, -1) - heading)))
        table[:, _WL], table[:, _DWL] = wl, np.roll(wl, -1) - wl
        table[:, _WR], table[:, _DWR] = wr, np.roll(wr, -1) - wr
        self.num_points = len(pts)
        self.length = float(track.length)
        self.spacing = self.length / self.num_points
        self.nx, self.ny = grid.shape
        self.origin_x, self.origin_y = (float(v) for v in grid.origin)
        self.inv_cell = 1.0 / grid.cell_size
        self.cell_segments = torch.tensor(grid.segments, dtype=torch.long, device=device)
        self.table = torch.tensor(table, dtype=dtype, device=device)
        self.branch_penalty = 2.0 * track.half_width_max()

    @classmethod
    def from_track(
        cls, track: "Track", dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> "TrackLookup":
        return cls(track, dtype, device)

    def _on_segment(self, x: Tensor, y: Tensor, seg: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(row of the table, lateral, along, fraction clamped to [0, 1]) for segment ``seg``."""
        row = self.table[seg]
        rx, ry = x - row[..., _AX], y - row[..., _AY]
        tx, ty = row[..., _TX], row[..., _TY]
        along = rx * tx + ry * ty
        lateral = tx * ry - ty * rx
        frac = (along / row[..., _LEN]).clamp(0.0, 1.0)
        return row, lateral, along, frac

    def project(self, x: Tensor, y: Tensor, yaw: Tensor | None = None) -> Projection:
        """Project points (any shape; x, y [m], optional yaw [rad] of the same shape)."""
        ix = ((x - self.origin_x) * self.inv_cell).floor().clamp(0, self.nx - 1).long()
        iy = ((y - self.origin_y) * self.inv_cell).floor().clamp(0, self.ny - 1).long()
        cell = ix * self.ny + iy
        row_a, lat_a, along_a, frac_a = self._on_segment(x, y, self.cell_segments[cell, 0])
        row_b, lat_b, along_b, frac_b = self._on_segment(x, y, self.cell_segments[cell, 1])
        head_a = row_a[..., _HEAD] + frac_a * row_a[..., _DHEAD]
        head_b = row_b[..., _HEAD] + frac_b * row_b[..., _DHEAD]
        score_a, score_b = lat_a.abs(), lat_b.abs()
        if yaw is not None:
            score_a = score_a + self.branch_penalty * (1.0 - torch.cos(yaw - head_a))
            score_b = score_b + self.branch_penalty * (1.0 - torch.cos(yaw - head_b))
        use_b = score_b < score_a
        pick = lambda a, b: torch.where(use_b, b, a)  # noqa: E731
        frac = pick(frac_a, frac_b)
        s = pick(row_a[..., _S0] + along_a, row_b[..., _S0] + along_b)
        s = torch.remainder(s, self.length)
        return Projection(
            s=s,
            lateral=pick(lat_a, lat_b),
            heading=pick(head_a, head_b),
            curvature=pick(row_a[..., _DHEAD] / row_a[..., _LEN], row_b[..., _DHEAD] / row_b[..., _LEN]),
            width_left=pick(row_a[..., _WL], row_b[..., _WL]) + frac * pick(row_a[..., _DWL], row_b[..., _DWL]),
            width_right=pick(row_a[..., _WR], row_b[..., _WR]) + frac * pick(row_a[..., _DWR], row_b[..., _DWR]),
        )

    def locate(self, x: float, y: float, yaw: float, vehicle_width: float) -> tuple[float, float, bool]:
        """One car: (arc length [m], signed lateral offset [m], whether some part of it is
        beyond the edge on the side it is on)."""
        point = lambda v: torch.tensor([float(v)], dtype=self.table.dtype)  # noqa: E731
        p = self.project(point(x), point(y), point(yaw))
        lateral = float(p.lateral[0])
        room = float(p.width_left[0]) if lateral > 0 else float(p.width_right[0])
        return float(p.s[0]), lateral, abs(lateral) + 0.5 * vehicle_width > room

    def _bracket(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        u = torch.remainder(s, self.length) / self.spacing
        i = u.floor().long().clamp(0, self.num_points - 1)
        return i, (i + 1) % self.num_points, u - i

    def interpolate(self, table: Tensor, s: Tensor) -> Tensor:
        """A per-point table (N,) at arc lengths s, linearly interpolated, periodic."""
        i, j, frac = self._bracket(s)
        return torch.lerp(table[i], table[j], frac.to(table.dtype))

    def slope(self, table: Tensor, s: Tensor) -> Tensor:
        """d table / ds at arc lengths s (piecewise constant)."""
        i, j, _ = self._bracket(s)
        return (table[j] - table[i]) / self.spacing
