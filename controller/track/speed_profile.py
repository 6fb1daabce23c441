"""Speed reference along a track: a target speed capped by lateral acceleration and braking."""

from __future__ import annotations

import numpy as np

from controller.track.track import Track


def speed_profile(
    track: Track,
    target_speed: float,
    max_lateral_accel: float,
    accel: float = 2.0,
    decel: float = 4.0,
) -> np.ndarray:
    """v_ref (N,) at the track's points [m/s].

    Pointwise cap min(target, sqrt(a_lat / |kappa|)), then a forward pass limiting
    acceleration (v_{k+1}^2 <= v_k^2 + 2 a ds) and a backward pass limiting braking, each run
    twice around the closed lap so that the start line is no special point.
    """
    if not (target_speed > 0 and max_lateral_accel > 0 and accel > 0 and decel > 0):
        raise ValueError("speeds and accelerations must be positive")
    kappa = np.abs(np.asarray(track.curvature))
    v = np.minimum(target_speed, np.sqrt(max_lateral_accel / np.maximum(kappa, 1e-9)))
    ds = track.spacing
    n = len(v)
    v2 = v**2
    for _ in range(2):
        for k in range(n):
            nxt = (k + 1) % n
            v2[nxt] = min(v2[nxt], v2[k] + 2 * accel * ds)
    for _ in range(2):
        for k in range(n - 1, -1, -1):
            prev = (k - 1) % n
            v2[prev] = min(v2[prev], v2[k] + 2 * decel * ds)
    return np.sqrt(v2)
