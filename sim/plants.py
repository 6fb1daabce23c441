"""Plants the simulator can drive: anything with ``reset(state)`` and ``step(action, period)``."""

from __future__ import annotations

import numpy as np
import torch

from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import BicycleParams


class KinematicPlant:
    """The kinematic bicycle itself as the car (no model mismatch; tests and baselines)."""

    def __init__(self, params: BicycleParams, period: float):
        self.model = KinematicBicycle(params, period)
        self.period = period
        self.state = np.zeros(7)

    def reset(self, state: np.ndarray) -> None:
        self.state = np.asarray(state, dtype=np.float64).copy()

    def step(self, action: np.ndarray, period: float) -> np.ndarray:
        if abs(period - self.period) > 1e-12:
            raise ValueError(f"this plant steps by {self.period} s")
        x = torch.as_tensor(self.state[:5])
        nxt = self.model.step(x, torch.as_tensor(np.asarray(action, dtype=np.float64)))
        self.state[:5] = nxt.numpy()
        self.state[5:] = np.nan
        return self.state.copy()
