"""The simulator's car: the single-track model behind actuators with lag and dead time.

A command sent at time t reaches the actuators at t + dead_time (the last command held until
then; zero before the first); each actuator follows its command through a first-order lag
with its own time constant (0: none). The model is integrated by RK4 in substeps of at most
``substep`` seconds, the actuator outputs held over each substep.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from vehicle_models.params import VEHICLE_DIR
from vehicle_models.single_track import SingleTrackParams, load_single_track_params, rk4_step


class ActuatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lag_steer_rate: float = Field(0.05, ge=0, description="time constant of the steering actuator [s]")
    lag_accel: float = Field(0.1, ge=0, description="time constant of the drive / brakes [s]")
    dead_time: float = Field(0.0, ge=0, description="delay before a command takes effect [s]")
    substep: float = Field(0.002, gt=0, le=0.05, description="integration substep [s]")


def load_actuators(name_or_path: str | Path, **overrides: object) -> ActuatorConfig:
    path = Path(name_or_path)
    if not path.suffix:
        path = VEHICLE_DIR / f"{name_or_path}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    return ActuatorConfig(**((data.get("actuators") or {}) | overrides))


def lag_factor(time_constant: float, h: float) -> float:
    """Exact first-order lag over h: y += (u - y) * factor."""
    return 1.0 if time_constant <= 0 else 1.0 - math.exp(-h / time_constant)


class TrueCar:
    def __init__(self, params: SingleTrackParams, actuators: ActuatorConfig = ActuatorConfig()):
        self.params = params
        self.actuators = actuators
        self.reset(np.zeros(7))

    @classmethod
    def named(cls, vehicle: str, **actuator_overrides: object) -> "TrueCar":
        return cls(load_single_track_params(vehicle), load_actuators(vehicle, **actuator_overrides))

    def reset(self, state: np.ndarray) -> None:
        """Place the car; actuators at rest, nothing in flight. Missing yaw_rate/slip: 0."""
        x = np.zeros(7)
        s = np.nan_to_num(np.asarray(state, dtype=np.float64)[:7], nan=0.0)
        x[: len(s)] = s
        self.state = x
        self.time = 0.0
        self.applied = np.zeros(2)  #: actuator outputs now
        self._commands: deque[tuple[float, np.ndarray]] = deque()
        self._effective = np.zeros(2)  #: the command that has come through the dead time

    def _command_at(self, t: float) -> np.ndarray:
        release = t - self.actuators.dead_time + 1e-12
        while self._commands and self._commands[0][0] <= release:
            self._effective = self._commands.popleft()[1]
        return self._effective

    def step(self, action: np.ndarray, period: float) -> np.ndarray:
        """Send ``action`` now and advance ``period`` seconds; the new state (7,)."""
        self._commands.append((self.time, np.asarray(action, dtype=np.float64).copy()))
        # The tyre terms scale with 1 / v: near standstill the model is stiff, and RK4 needs
        # steps below ~0.014 v seconds to stay stable. Shrink the substep there.
        speed = max(abs(float(self.state[3])), 0.05)
        substep = min(self.actuators.substep, max(2.5e-4, 0.005 * speed))
        n = max(1, math.ceil(period / substep - 1e-9))
        h = period / n
        f_steer = lag_factor(self.actuators.lag_steer_rate, h)
        f_accel = lag_factor(self.actuators.lag_accel, h)
        for _ in range(n):
            command = self._command_at(self.time)
            self.applied[0] += (command[0] - self.applied[0]) * f_steer
            self.applied[1] += (command[1] - self.applied[1]) * f_accel
            self.state = rk4_step(self.params, self.state, self.applied, h)
            self.time += h
        return self.state.copy()
