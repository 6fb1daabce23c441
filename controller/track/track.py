"""The ``Track``: a closed centre line resampled at uniform arc length, with widths.

Input points (any spacing) are joined by a periodic cubic spline parameterised by chord length;
the spline's arc length is the track's ``length``, and the track keeps N = round(length / spacing)
points at s_k = k * length / N along it. Heading and curvature are the spline's, at those points.
Widths are interpolated linearly (periodic) in the chord parameter: a cubic could overshoot below
zero between two narrow points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.interpolate import CubicSpline

from controller.track import tum_csv

if TYPE_CHECKING:
    from controller.track.grid import ProjectionGrid
    from controller.track.lookup import TrackLookup

# Arc length by Gauss-Legendre quadrature on sub-intervals of each spline piece: 8 x 5 nodes per
# piece integrate the speed |c'(u)| of a smooth piece to ~1e-12 relative.
_SUBDIVISIONS = 8
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(5)
_NEWTON_STEPS = 3


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Track:
    """A closed track, driven in the direction of increasing s.

    Frame: ISO / CommonRoad (x forward, y left); ``heading`` is the tangent angle, unwrapped
    along the lap (continuous in s, jumping by 2 pi * winding number at s = 0); ``curvature``
    is positive for left turns; widths are measured from the centre line to each edge.
    """

    name: str
    points: np.ndarray  #: (N, 2) centre line [m]
    s: np.ndarray  #: (N,) arc length of each point, k * length / N [m]
    heading: np.ndarray  #: (N,) tangent angle [rad]
    curvature: np.ndarray  #: (N,) [1/m], left turn positive
    width_left: np.ndarray  #: (N,) centre line to left edge [m]
    width_right: np.ndarray  #: (N,) centre line to right edge [m]
    length: float  #: lap length along the spline [m]

    def __post_init__(self) -> None:
        for name in ("points", "s", "heading", "curvature", "width_left", "width_right"):
            object.__setattr__(self, name, _readonly(getattr(self, name)))

    @classmethod
    def from_centre_line(
        cls,
        points: np.ndarray,
        width_left: np.ndarray,
        width_right: np.ndarray,
        spacing: float = 1.0,
        name: str = "track",
    ) -> "Track":
        """Resample a closed centre line (M, 2), without a repeated closing point."""
        points = np.asarray(points, dtype=np.float64)
        width_left = np.broadcast_to(np.asarray(width_left, dtype=np.float64), points.shape[:1])
        width_right = np.broadcast_to(np.asarray(width_right, dtype=np.float64), points.shape[:1])
        _check_centre_line(points, width_left, width_right, spacing)

        closed = np.vstack([points, points[:1]])
        chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
        spline = CubicSpline(chord, closed, bc_type="periodic")
        arc = _ArcLength(spline, chord)
        length = arc.total
        n = max(4, round(length / spacing))
        s = np.arange(n) * (length / n)
        u = arc.parameter_at(s)

        d1, d2 = spline(u, 1), spline(u, 2)
        speed = np.hypot(d1[:, 0], d1[:, 1])
        heading = np.unwrap(np.arctan2(d1[:, 1], d1[:, 0]))
        curvature = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / speed**3
        return cls(
            name=name,
            points=spline(u),
            s=s,
            heading=heading,
            curvature=curvature,
            width_left=np.interp(u, chord, np.append(width_left, width_left[0])),
            width_right=np.interp(u, chord, np.append(width_right, width_right[0])),
            length=float(length),
        )

    # -- derived ---------------------------------------------------------------------------
    @property
    def num_points(self) -> int:
        return len(self.s)

    @property
    def spacing(self) -> float:
        """Arc length between consecutive points, length / N [m]."""
        return self.length / self.num_points

    def half_width_max(self) -> float:
        return float(max(self.width_left.max(), self.width_right.max()))

    @cached_property
    def grid(self) -> "ProjectionGrid":
        """The projection grid (built once per track; see ``controller.track.grid``)."""
        from controller.track.grid import build_grid

        return build_grid(self.points, max(self.width_left.max(), self.width_right.max()))

    def lookup(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> "TrackLookup":
        """Tensors for fast batched projection onto this track."""
        from controller.track.lookup import TrackLookup

        return TrackLookup.from_track(self, dtype=dtype, device=device)

    def to_csv(self, path: str | Path) -> None:
        """Write the resampled centre line in the TUM racetrack-database format."""
        tum_csv.write(path, self.points, self.width_right, self.width_left)

    def __repr__(self) -> str:
        return (
            f"Track({self.name!r}, length={self.length:.1f} m, points={self.num_points}, "
            f"spacing={self.spacing:.3f} m)"
        )


def _check_centre_line(
    points: np.ndarray, width_left: np.ndarray, width_right: np.ndarray, spacing: float
) -> None:
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (M, 2), got {points.shape}")
    if len(points) < 4:
        raise ValueError(f"a track needs at least 4 points, got {len(points)}")
    if not (np.isfinite(points).all() and np.isfinite(width_left).all()
            and np.isfinite(width_right).all()):
        raise ValueError("points and widths must be finite")
    if (width_left <= 0).any() or (width_right <= 0).any():
        raise ValueError("widths must be positive")
    step = np.linalg.norm(np.diff(np.vstack([points, points[:1]]), axis=0), axis=1)
    if (step <= tum_csv.SAME_POINT_M).any():
        i = int(np.argmax(step <= tum_csv.SAME_POINT_M))
        raise ValueError(f"points {i} and {(i + 1) % len(points)} coincide")
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be positive, got {spacing}")


class _ArcLength:
    """Arc length s(u) of a spline and its inverse u(s), by quadrature and Newton steps."""

    def __init__(self, spline: CubicSpline, knots: np.ndarray):
        self.spline = spline
        fine = np.linspace(knots[:-1], knots[1:], _SUBDIVISIONS, endpoint=False, axis=1).ravel()
        self.u = np.append(fine, knots[-1])
        pieces = self._integral(self.u[:-1], self.u[1:])
        self.s = np.concatenate([[0.0], np.cumsum(pieces)])
        self.total = float(self.s[-1])

    def _speed(self, u: np.ndarray) -> np.ndarray:
        d = self.spline(u, 1)
        return np.hypot(d[..., 0], d[..., 1])

    def _integral(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        half = 0.5 * (b - a)
        nodes = (0.5 * (a + b))[:, None] + half[:, None] * _GAUSS_NODES
        return half * (self._speed(nodes) @ _GAUSS_WEIGHTS)

    def parameter_at(self, s: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.u) - 2)
        u0, s0 = self.u[j], self.s[j]
        frac = (s - s0) / (self.s[j + 1] - s0)
        u = u0 + frac * (self.u[j + 1] - u0)
        for _ in range(_NEWTON_STEPS):
            u = u - (s0 + self._integral(u0, u) - s) / self._speed(u)
        return u
