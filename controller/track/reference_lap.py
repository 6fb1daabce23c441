"""The reference lap time: a flying lap along the centre line at the friction limit.

The car is a point mass on the centre line. Its combined acceleration stays on the g-g circle
of radius mu g; the lateral part is v^2 |kappa|, so the longitudinal part left over is

    a_avail(v, kappa) = sqrt((mu g)^2 - (v^2 kappa)^2)

Driving is further capped the way CommonRoad caps it, a_max below v_switch and
a_max v_switch / v above (a power limit); braking by a_max; speed by v_max. The speed profile
is the classic three-step one (e.g. Velenis and Tsiotras, "Minimum-time travel for a vehicle
with acceleration limits", 2008):

1. the cornering limit v_k <= min(v_max, sqrt(mu g / |kappa_k|));
2. a forward pass v_{k+1}^2 <= v_k^2 + 2 ds a_drive(v_k, kappa_k);
3. a backward pass v_{k-1}^2 <= v_k^2 + 2 ds a_brake(v_k, kappa_k);

each pass run twice around the closed loop, so the start line is no special point and the lap
is flying (it starts at the speed it ends with). The lap time is sum ds / mean(v_k, v_{k+1}).

Curvature of a surveyed centre line (the TUM files) is noisy: a 1 m wiggle of the points reads
as a tight corner. ``smoothing_m`` averages the curvature over a window of that many metres
(periodic, a box filter) before the profile is computed; ``DEFAULT_SMOOTHING_M`` is "lightly
smoothed". Pure functions, numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.track.track import Track

GRAVITY = 9.81  #: [m/s^2], CommonRoad's value
DEFAULT_SMOOTHING_M = 15.0  #: curvature box filter for surveyed tracks [m]


@dataclass(frozen=True)
class ReferenceLap:
    """A friction-limited flying lap along a track's centre line."""

    time_s: float  #: lap time [s]
    speed: np.ndarray  #: (N,) speed at the track's points [m/s]
    curvature: np.ndarray  #: (N,) the (smoothed) curvature the profile used [1/m]

    @property
    def mean_speed(self) -> float:
        return float(len(self.speed) / np.sum(1.0 / self.speed))


def smoothed_curvature(track: Track, window_m: float) -> np.ndarray:
    """The track's curvature averaged over ``window_m`` metres (periodic box filter)."""
    kappa = np.asarray(track.curvature, dtype=np.float64)
    half = int(round(0.5 * window_m / track.spacing))
    if half <= 0:
        return kappa.copy()
    kernel = np.full(2 * half + 1, 1.0 / (2 * half + 1))
    wrapped = np.concatenate([kappa[-half:], kappa, kappa[:half]])
    return np.convolve(wrapped, kernel, mode="valid")


def drive_limit(speed: np.ndarray | float, accel_max: float, v_switch: float | None) -> np.ndarray:
    """CommonRoad's drive limit: a_max up to v_switch, a_max v_switch / v above [m/s^2]
    (None: a_max at every speed)."""
    if v_switch is None:
        return np.full_like(np.asarray(speed, dtype=np.float64), accel_max)
    return accel_max * v_switch / np.maximum(speed, v_switch)


def reference_lap(
    track: Track,
    mu: float = 1.0,
    accel_max: float = 11.5,
    v_switch: float | None = 7.319,
    v_max: float = 50.8,
    smoothing_m: float = DEFAULT_SMOOTHING_M,
    gravity: float = GRAVITY,
    drive_max: float | None = None,
    brake_max: float | None = None,
) -> ReferenceLap:
    """The friction-limited flying lap (see the module docstring); defaults: vehicle 2.

    ``drive_max`` and ``brake_max`` [m/s^2] further cap driving and braking (None: only the
    g-g circle and a_max): what one axle transmits, for a speed reference the car can follow."""
    if not (mu > 0 and accel_max > 0 and v_max > 0 and smoothing_m >= 0):
        raise ValueError("mu, accel_max and v_max must be positive, smoothing_m >= 0")
    if (drive_max is not None and not drive_max > 0) or (brake_max is not None and not brake_max > 0):
        raise ValueError("drive_max and brake_max must be positive (or None)")
    if v_switch is not None and not v_switch > 0:
        raise ValueError("v_switch must be positive (or None: no power limit)")
    drive_cap = accel_max if drive_max is None else min(accel_max, drive_max)
    brake_cap = accel_max if brake_max is None else min(accel_max, brake_max)
    switch = v_switch if v_switch is not None else math.inf
    grip = mu * gravity
    kappa = np.abs(smoothed_curvature(track, smoothing_m))
    ds = track.spacing
    n = len(kappa)
    v = np.minimum(v_max, np.sqrt(grip / np.maximum(kappa, 1e-12)))

    def available(speed: float, k: float) -> float:
        lateral = speed * speed * k
        return math.sqrt(max(grip * grip - lateral * lateral, 0.0))

    v_list = v.tolist()
    kappa_list = kappa.tolist()
    for _ in range(2):
        for k in range(n):
            nxt = (k + 1) % n
            a = min(available(v_list[k], kappa_list[k]),
                    drive_cap if v_list[k] <= switch else min(drive_cap, accel_max * switch / v_list[k]))
            v_list[nxt] = min(v_list[nxt], math.sqrt(v_list[k] ** 2 + 2.0 * a * ds))
    for _ in range(2):
        for k in range(n - 1, -1, -1):
            prev = (k - 1) % n
            a = min(available(v_list[k], kappa_list[k]), brake_cap)
            v_list[prev] = min(v_list[prev], math.sqrt(v_list[k] ** 2 + 2.0 * a * ds))
    speed = np.asarray(v_list)
    time_s = float(np.sum(2.0 * ds / (speed + np.roll(speed, -1))))
    return ReferenceLap(time_s=time_s, speed=speed, curvature=kappa)
