"""The minimum-curvature racing line: the smoothest closed path between a track's edges.

A car's cornering speed is sqrt(mu g / kappa), so the line with the least curvature is, to a
first approximation, the fastest one (Braghin et al., "Race driver model", 2008; the TUM
"minimum curvature" line, Heilmeier et al. 2019, solves the same problem on splines). The line
moves each centre-line point sideways by an offset alpha along the left normal, within the
edges less a clearance m (half the car's width plus a margin):

    -(w_right - m) <= alpha <= w_left - m

In the track's curvilinear frame, a path at offset alpha(s) has curvature

    kappa_line = kappa / (1 - kappa alpha) + alpha'' + ...  ~  kappa + kappa^2 alpha + alpha''

to first order (for a circle, alpha'' = 0 and the outer edge is the straightest). The line
minimises the sum of its squares on points ``step_m`` apart (alpha'' by periodic second
differences), a convex QP with a banded Hessian, solved by Ipopt through CasADi's ``conic``
in well under a second for a 7 km track. The first-order curvature errs where kappa alpha is
not small (a hairpin); solving again about the line found did not help (the five TUM tracks'
reference laps moved by -2 % to +3 %), so one solve it is. The offsets are interpolated back
to every point, and the line becomes a ``Track`` of its own whose widths reach the same edges
(w_left - alpha, w_right + alpha): a planner tracking it keeps the real boundaries. Where the
track is narrower than 2 m, the line takes the middle between the edges.
"""

from __future__ import annotations

import casadi as ca
import numpy as np
import scipy.sparse as sp

from controller.track.reference_lap import smoothed_curvature
from controller.track.track import Track

#: Spacing of the points the QP places [m]: 5 m resolves every corner of a TUM track
#: (their tightest radii are about 15 m) with a fifth of the variables of a 1 m grid.
DEFAULT_STEP_M = 5.0


class RacingLineError(RuntimeError):
    """The line's QP did not solve."""


def min_curvature_offsets(track: Track, margin: float, step_m: float = DEFAULT_STEP_M) -> np.ndarray:
    """Lateral offsets alpha [m] (left positive) of the minimum-curvature line at every point
    of ``track``, keeping ``margin`` [m] from each edge (module docstring)."""
    if not margin >= 0 or not step_m > 0:
        raise ValueError("margin must be >= 0 and step_m > 0")
    n = int(round(track.length / step_m))
    if n < 8:
        raise ValueError(f"track too short for a racing line at {step_m} m steps")
    picked = (np.arange(n) * track.num_points) // n
    spacing = track.length / n
    kappa = smoothed_curvature(track, step_m)[picked]
    second_difference = sp.diags(
        [np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1), [1.0], [1.0]],
        [-1, 0, 1, n - 1, -(n - 1)],
        format="csc",
    ) / spacing**2
    # kappa_line ~ kappa + M alpha: minimise |kappa + M alpha|^2 = 0.5 alpha' H alpha + g' alpha + c,
    # scaled by spacing^4 so that the second differences' entries are of order one.
    scale = spacing * spacing
    linear = (sp.diags(scale * kappa * kappa) + scale * second_difference).tocsc()
    hessian = (linear.T @ linear).tocsc()
    gradient = linear.T @ (scale * kappa)
    low = -(track.width_right[picked] - margin)
    high = track.width_left[picked] - margin
    narrow = low > high
    middle = 0.5 * (track.width_left[picked] - track.width_right[picked])
    low, high = np.where(narrow, middle, low), np.where(narrow, middle, high)

    hessian_dm = ca.DM(2.0 * hessian)
    # An interior point (Ipopt, CasADi's bundled NLP solver) with exact sparse factorisations:
    # the Hessian's condition grows as n^4, and a first-order QP solver (OSQP) stalled on it.
    solver = ca.conic(
        "racing_line", "nlpsol", {"h": hessian_dm.sparsity(), "a": ca.Sparsity(0, n)},
        {"nlpsol": "ipopt", "error_on_fail": False,
         "nlpsol_options": {"print_time": False, "ipopt.print_level": 0, "ipopt.sb": "yes", "ipopt.tol": 1e-10}},
    )
    result = solver(h=hessian_dm, g=2.0 * gradient, lbx=low, ubx=high)
    if not solver.stats().get("success", False):
        raise RacingLineError("the racing line's QP did not solve (Ipopt)")
    alpha = np.clip(np.asarray(result["x"]).ravel(), low, high)
    knots = np.append(track.s[picked], track.length)
    return np.interp(track.s, knots, np.append(alpha, alpha[0]))


def min_curvature_line(track: Track, margin: float, step_m: float = DEFAULT_STEP_M) -> Track:
    """The minimum-curvature line of ``track`` as a ``Track`` (same edges, widths from the
    line), resampled at the track's spacing and starting beside the track's start."""
    alpha = min_curvature_offsets(track, margin, step_m)
    normal = np.stack([-np.sin(track.heading), np.cos(track.heading)], axis=1)
    return Track.from_centre_line(
        track.points + alpha[:, None] * normal,
        np.maximum(track.width_left - alpha, 0.0),
        np.maximum(track.width_right + alpha, 0.0),
        spacing=track.spacing,
        name=f"{track.name}:min_curvature",
    )


__all__ = ["DEFAULT_STEP_M", "RacingLineError", "min_curvature_line", "min_curvature_offsets"]
