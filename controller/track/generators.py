"""Built-in tracks, generated so that the project needs no external file.

Sizes suit the default full-size car (CommonRoad vehicle 2): lanes 8 m wide, bends of radius
30 m or more, so that 10 m/s stays within a lateral acceleration of 4 m/s^2.

- ``circle``: a circle of radius 50 m.
- ``figure_eight``: a lemniscate of Gerono scaled to 2 x 120 m by 2 x 60 m; it crosses itself
  at the origin (the projection uses the heading to stay on the branch being driven).
- ``random`` / ``random:SEED``: a smooth star-shaped closed circuit, r(phi) = R (1 + sum of a
  few low Fourier modes with seeded random amplitudes), rejected and redrawn until its
  tightest bend has a radius of at least 25 m. Same seed, same track.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from controller.track.track import Track

DEFAULT_WIDTH_M = 8.0
RANDOM_MIN_RADIUS_M = 25.0


def circle(radius: float = 50.0, width: float = DEFAULT_WIDTH_M, spacing: float = 1.0) -> Track:
    phi = np.linspace(0.0, 2 * np.pi, 256, endpoint=False)
    points = radius * np.column_stack([np.sin(phi), 1.0 - np.cos(phi)])  # starts at the origin, heading +x
    return Track.from_centre_line(points, width / 2, width / 2, spacing, name="circle")


def figure_eight(
    half_length: float = 120.0, half_width: float = 60.0, width: float = DEFAULT_WIDTH_M,
    spacing: float = 1.0,
) -> Track:
    t = np.linspace(0.0, 2 * np.pi, 512, endpoint=False)
    # Lemniscate of Gerono, started on the right lobe's outermost point and driven counter-clockwise.
    x = half_length * np.cos(t)
    y = half_width * 2.0 * np.sin(t) * np.cos(t)
    return Track.from_centre_line(np.column_stack([x, y]), width / 2, width / 2, spacing, name="figure_eight")


def random_circuit(
    seed: int = 0, mean_radius: float = 120.0, width: float = DEFAULT_WIDTH_M, spacing: float = 1.0
) -> Track:
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    for _ in range(1000):
        modes = np.arange(2, 6)
        amplitude = rng.uniform(0.0, 0.25, len(modes)) / modes
        phase = rng.uniform(0.0, 2 * np.pi, len(modes))
        r = mean_radius * (1.0 + (amplitude[:, None] * np.cos(modes[:, None] * phi + phase[:, None])).sum(0))
        points = np.column_stack([r * np.cos(phi), r * np.sin(phi)])
        track = Track.from_centre_line(points, width / 2, width / 2, spacing, name=f"random:{seed}")
        if np.abs(track.curvature).max() <= 1.0 / RANDOM_MIN_RADIUS_M:
            return track
    raise RuntimeError(f"no circuit with bends of at least {RANDOM_MIN_RADIUS_M} m for seed {seed}")


BUILTIN: dict[str, Callable[[], Track]] = {
    "circle": circle,
    "figure_eight": figure_eight,
    "random": random_circuit,
}
