"""Batched projection of points onto a track, in torch: O(1) per point, compile-friendly.

Each point finds its grid cell (``grid.py``), projects onto the segments of two short windows
of the centre-line polyline (its own branch and the nearest other branch) and keeps the
better: the nearer one, or, when a heading is given, the one minimising

    distance + branch_penalty * (1 - cos(yaw - segment heading))

so that at a figure-eight's crossing or between the two sides of a hairpin a car stays on the
branch it is driving along. Only gathers and elementwise arithmetic: no data-dependent control
flow, so ``torch.compile`` fuses it into the rollouts.
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

    s: Tensor  #: arc length of the nearest centre-line point, in [0, length) [m]
    lateral: Tensor  #: signed offset from the centre line, left positive [m]
    heading: Tensor  #: centre-line tangent angle there [rad]
    curvature: Tensor  #: centre-line curvature there, left turn positive [1/m]
    width_left: Tensor  #: centre line to left edge there [m]
    width_right: Tensor  #: centre line to right edge there [m]


class TrackLookup:
    """Tensors of one track on one device and dtype; see the module docstring."""

    def __init__(self, track: "Track", dtype: torch.dtype, device: torch.device | str):
        grid = track.grid
        as_t = lambda a: torch.tensor(np.array(a), dtype=dtype, device=device)  # noqa: E731
        pts = np.asarray(track.points)
        seg = np.roll(pts, -1, axis=0) - pts
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        heading = np.asarray(track.heading)
        n = len(pts)
        self.num_points = n
        self.length = float(track.length)
        self.spacing = self.length / n
        self.window = grid.window
        self.nx, self.ny = grid.shape
        self.origin = as_t(grid.origin)
        self.inv_cell = 1.0 / grid.cell_size
        self.starts = torch.as_tensor(grid.starts, dtype=torch.long, device=device)
        self.offsets = torch.arange(grid.window, device=device)
        self.branch_penalty = 2.0 * float(max(track.width_left.max(), track.width_right.max()))
        self.a = as_t(pts)
        self.d = as_t(seg)
        self.inv_len2 = as_t(1.0 / seg_len**2)
        self.seg_len = as_t(seg_len)
        self.s = as_t(np.asarray(track.s))
        self.heading = as_t(heading)
        self.heading_step = as_t(np.angle(np.exp(1j * (np.roll(heading, -1) - heading))))
        self.curvature = as_t(track.curvature)
        self.width_left = as_t(track.width_left)
        self.width_right = as_t(track.width_right)

    @classmethod
    def from_track(
        cls, track: "Track", dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> "TrackLookup":
        return cls(track, dtype, device)

    def _candidates(self, x: Tensor, y: Tensor) -> Tensor:
        """(..., 2 * window) segment indices to search for each point."""
        ix = ((x - self.origin[0]) * self.inv_cell).floor().clamp(0, self.nx - 1).long()
        iy = ((y - self.origin[1]) * self.inv_cell).floor().clamp(0, self.ny - 1).long()
        starts = self.starts[ix * self.ny + iy]  # (..., 2)
        idx = (starts.unsqueeze(-1) + self.offsets) % self.num_points  # (..., 2, W)
        return idx.flatten(-2)

    def project(self, x: Tensor, y: Tensor, yaw: Tensor | None = None) -> Projection:
        """Project points (any shape; x, y [m], optional yaw [rad] of the same shape)."""
        idx = self._candidates(x, y)
        px, py = x.unsqueeze(-1), y.unsqueeze(-1)
        ax, ay = self.a[idx, 0], self.a[idx, 1]
        dx, dy = self.d[idx, 0], self.d[idx, 1]
        t = (((px - ax) * dx + (py - ay) * dy) * self.inv_len2[idx]).clamp(0.0, 1.0)
        ox, oy = px - ax - t * dx, py - ay - t * dy
        dist = torch.sqrt(ox * ox + oy * oy + 1e-12)
        # Nearest segment within each window (branch), then the better branch.
        shape = (*dist.shape[:-1], 2, self.window)
        near = dist.reshape(shape).argmin(-1, keepdim=True)
        near = near + torch.tensor([[0], [self.window]], device=near.device)
        near = near.flatten(-2)  # (..., 2)
        score = dist.gather(-1, near)
        if yaw is not None:
            seg_heading = self.heading[idx.gather(-1, near)] + t.gather(-1, near) * (
                self.heading_step[idx.gather(-1, near)]
            )
            score = score + self.branch_penalty * (1.0 - torch.cos(yaw.unsqueeze(-1) - seg_heading))
        best = near.gather(-1, score.argmin(-1, keepdim=True))
        i = idx.gather(-1, best).squeeze(-1)
        tb = t.gather(-1, best).squeeze(-1)
        cross = (dx * oy - dy * ox).gather(-1, best).squeeze(-1)
        # The distance itself, signed: past a vertex on the outside of a bend the point is
        # nearer the vertex than the segment's line.
        lateral = torch.sign(cross) * dist.gather(-1, best).squeeze(-1)
        j = (i + 1) % self.num_points
        s = self.s[i] + tb * self.seg_len[i]
        s = torch.where(s >= self.length, s - self.length, s)
        return Projection(
            s=s,
            lateral=lateral,
            heading=self.heading[i] + tb * self.heading_step[i],
            curvature=torch.lerp(self.curvature[i], self.curvature[j], tb),
            width_left=torch.lerp(self.width_left[i], self.width_left[j], tb),
            width_right=torch.lerp(self.width_right[i], self.width_right[j], tb),
        )

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
