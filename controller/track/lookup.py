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

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vehicle_models.mathops import TORCH

if TYPE_CHECKING:
    from controller.track.track import Track


class Projection(NamedTuple):
    """Where points lie relative to the track (all of the points' shape)."""

    s: Any  #: arc length of the projection, in [0, length) [m]
    lateral: Any  #: signed offset from the centre line, left positive [m]
    heading: Any  #: centre-line tangent angle there [rad]
    curvature: Any  #: d heading / ds there, left turn positive [1/m]
    width_left: Any  #: centre line to left edge there [m]
    width_right: Any  #: centre line to right edge there [m]


class Segment(NamedTuple):
    """One centre-line segment: a row of the per-segment table, in this column order (the
    kernel's column enum is generated from these names)."""

    ax: Any  #: start point [m]
    ay: Any
    tx: Any  #: unit tangent
    ty: Any
    s0: Any  #: arc length at the start [m]
    inv_len: Any  #: 1 / segment length [1/m]
    head: Any  #: heading at the start [rad]
    dhead: Any  #: heading change to the next segment, wrapped [rad]
    wl: Any  #: left width at the start [m]
    dwl: Any  #: its change to the next segment [m]
    wr: Any  #: right width at the start [m]
    dwr: Any


class SegmentFit(NamedTuple):
    """A point's projection onto one segment's line."""

    lateral: Any  #: signed offset, left positive [m]
    along: Any  #: distance along the segment from its start [m]
    frac: Any  #: along / length, clamped to [0, 1]
    heading: Any  #: heading interpolated there [rad]
    score: Any  #: |lateral| + branch_penalty (1 - cos(yaw - heading)); the lower fits better


def fit_segment(ops: Any, x: Any, y: Any, yaw: Any, seg: Segment, branch_penalty: Any) -> SegmentFit:
    """Project the point (x, y), driving at yaw, onto one segment's line."""
    rx, ry = x - seg.ax, y - seg.ay
    along = rx * seg.tx + ry * seg.ty
    lateral = seg.tx * ry - seg.ty * rx
    frac = ops.clip(along * seg.inv_len, 0.0, 1.0)
    heading = seg.head + frac * seg.dhead
    return SegmentFit(lateral, along, frac, heading, ops.abs(lateral) + branch_penalty * (1.0 - ops.cos(yaw - heading)))


def project_on_branches(
    ops: Any, x: Any, y: Any, yaw: Any, a: Segment, b: Segment, branch_penalty: Any, length: Any
) -> Projection:
    """The projection onto whichever of two segments (one per branch) fits better: the
    equations of ``TrackLookup.project`` and of the kernel's projection (generated from this
    function by ``controller/native/codegen.py``)."""
    fit_a = fit_segment(ops, x, y, yaw, a, branch_penalty)
    fit_b = fit_segment(ops, x, y, yaw, b, branch_penalty)
    use_b = fit_b.score < fit_a.score
    seg = Segment(*(ops.where(use_b, cb, ca) for ca, cb in zip(a, b)))
    fit = SegmentFit(*(ops.where(use_b, fb, fa) for fa, fb in zip(fit_a, fit_b)))
    s = seg.s0 + fit.along
    return Projection(
        s=s - length * ops.floor(s / length),
        lateral=fit.lateral,
        heading=fit.heading,
        curvature=seg.dhead * seg.inv_len,
        width_left=seg.wl + fit.frac * seg.dwl,
        width_right=seg.wr + fit.frac * seg.dwr,
    )


class TrackLookup:
    """Tensors of one track on one device and dtype; see the module docstring."""

    def __init__(self, track: "Track", dtype: torch.dtype, device: torch.device | str):
        grid = track.grid
        pts = np.asarray(track.points, dtype=np.float64)
        seg = np.roll(pts, -1, axis=0) - pts
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        heading = np.asarray(track.heading, dtype=np.float64)
        wl, wr = np.asarray(track.width_left), np.asarray(track.width_right)
        columns = Segment(
            ax=pts[:, 0], ay=pts[:, 1], tx=seg[:, 0] / seg_len, ty=seg[:, 1] / seg_len, s0=np.asarray(track.s),
            inv_len=1.0 / seg_len, head=heading, dhead=np.angle(np.exp(1j * (np.roll(heading, -1) - heading))),
            wl=wl, dwl=np.roll(wl, -1) - wl, wr=wr, dwr=np.roll(wr, -1) - wr,
        )
        table = np.stack(columns, axis=-1)  # (num_points, len(Segment._fields)), float64 until here
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

    def _segment(self, index: Tensor) -> Segment:
        return Segment(*self.table[index].unbind(-1))

    def project(self, x: Tensor, y: Tensor, yaw: Tensor | None = None) -> Projection:
        """Project points (any shape; x, y [m], optional yaw [rad] of the same shape)."""
        ix = ((x - self.origin_x) * self.inv_cell).floor().clamp(0, self.nx - 1).long()
        iy = ((y - self.origin_y) * self.inv_cell).floor().clamp(0, self.ny - 1).long()
        cell = ix * self.ny + iy
        penalty = self.branch_penalty if yaw is not None else 0.0
        return project_on_branches(
            TORCH, x, y, x if yaw is None else yaw, self._segment(self.cell_segments[cell, 0]),
            self._segment(self.cell_segments[cell, 1]), penalty, self.length,
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
