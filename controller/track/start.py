"""Where a car starts on a track: the planners' warm-up state, the simulator's and the tests'."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from controller.track.track import Track
from vehicle_models.layout import State


def start_state(track: Track, speed: float, s: float = 0.0, state_dim: int = 5) -> Tensor:
    """On the centre line at arc length ``s``, heading along the track, at ``speed`` (float64)."""
    i = int(np.searchsorted(track.s, s % track.length, side="right") - 1)
    x = torch.zeros(state_dim, dtype=torch.float64)
    x[State.X], x[State.Y] = float(track.points[i, 0]), float(track.points[i, 1])
    x[State.YAW] = float(track.heading[i])
    x[State.V] = speed
    return x
