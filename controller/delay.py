"""Delay compensation: plan from the state the car will be in when the next action lands.

With an input dead time tau, an action sent at time t is applied from t + tau. At a request
stamped t the actions sent in (t - tau, t] are still in flight and will drive the car over
[t, t + tau); the planner should start from the state predicted through them. The dead time
is rounded to a whole number n of control periods; the last n actions sent are kept.

Two predictions with the same meaning: ``predict`` on tensors (any ``Dynamics``), and
``predict_array`` on numpy arrays, which the control step uses: for the kinematic bicycle it
evaluates the same equations on Python floats (a few microseconds for a single state, where a
chain of tiny torch ops costs tens), else it goes through torch. ``record`` takes any of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from vehicle_models.dynamics import Dynamics


class DelayCompensator:
    def __init__(self, model: Dynamics, dead_time: float, control_period: float):
        """``model`` must step by ``control_period`` (``model.with_dt(control_period)``)."""
        if abs(model.dt - control_period) > 1e-9:
            raise ValueError("the compensator's model must step by the control period")
        self.model = model
        self.steps = max(0, round(dead_time / control_period))
        self.control_period = control_period
        self._in_flight: deque[np.ndarray] = deque(maxlen=max(self.steps, 1))
        self._scalar_step = _scalar_step_of(model)

    @property
    def active(self) -> bool:
        return self.steps > 0

    def reset(self) -> None:
        """Forget the actions in flight (new episode: the car holds zero input)."""
        self._in_flight.clear()

    def take_in_flight(self, other: "DelayCompensator") -> None:
        """Carry over the actions ``other`` has seen sent (a model swap mid-episode)."""
        self._in_flight.clear()
        self._in_flight.extend(list(other._in_flight)[-self._in_flight.maxlen :])

    def record(self, action: Tensor | np.ndarray | Sequence[float]) -> None:
        """Note an action just sent (once per control period): a tensor, an array, or the
        control step's ``(steer_rate, accel)`` pair."""
        if self.active:
            if isinstance(action, Tensor):
                action = action.detach().cpu().numpy()
            self._in_flight.append(np.array(action, dtype=np.float64))

    def _pending(self) -> list[np.ndarray | None]:
        # Slots not yet filled are applied before the oldest recorded action: zero input.
        return [None] * (self.steps - len(self._in_flight)) + list(self._in_flight)

    def predict(self, state: Tensor) -> Tensor:
        """The state ``steps`` control periods ahead, under the actions in flight."""
        if not self.active:
            return state
        zero = torch.zeros(self.model.action_dim, dtype=state.dtype, device=state.device)
        x = state
        for action in self._pending():
            u = zero if action is None else torch.as_tensor(action, dtype=state.dtype, device=state.device)
            x = self.model.step(x, u)
        return x

    def predict_array(self, state: np.ndarray) -> np.ndarray:
        """``predict`` for a numpy state (nx,) float64."""
        if not self.active:
            return state
        if self._scalar_step is None:
            return self.predict(torch.from_numpy(np.asarray(state, dtype=np.float64))).numpy()
        zero = np.zeros(self.model.action_dim)
        x = np.asarray(state, dtype=np.float64)
        for action in self._pending():
            x = self._scalar_step(x, zero if action is None else action)
        return x


def _scalar_step_of(model: Dynamics):
    """The model's step on Python floats, where the model's equations allow it; else None."""
    from vehicle_models.kinematic import KinematicBicycle, kinematic_step
    from vehicle_models.mathops import SCALAR

    if type(model) is not KinematicBicycle:
        return None
    params, dt, integrator = model.params, model.dt, model.integrator

    def step(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return kinematic_step(SCALAR, params, x, u, dt, integrator)

    return step
