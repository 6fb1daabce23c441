"""Delay compensation: plan from the state the car will be in when the next action lands.

With an input dead time tau, an action sent at time t is applied from t + tau. At a request
stamped t the actions sent in (t - tau, t] are still in flight and will drive the car over
[t, t + tau); the planner should start from the state predicted through them. The dead time
is rounded to a whole number n of control periods; the last n actions sent are kept.
"""

from __future__ import annotations

from collections import deque

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
        self._in_flight: deque[Tensor] = deque(maxlen=max(self.steps, 1))

    @property
    def active(self) -> bool:
        return self.steps > 0

    def reset(self) -> None:
        """Forget the actions in flight (new episode: the car holds zero input)."""
        self._in_flight.clear()

    def record(self, action: Tensor) -> None:
        """Note an action just sent (once per control period)."""
        if self.active:
            self._in_flight.append(action.detach().clone())

    def predict(self, state: Tensor) -> Tensor:
        """The state ``steps`` control periods ahead, under the actions in flight."""
        if not self.active:
            return state
        zero = torch.zeros(self.model.action_dim, dtype=state.dtype, device=state.device)
        # Slots not yet filled are applied before the oldest recorded action: zero input.
        pending = [zero] * (self.steps - len(self._in_flight)) + list(self._in_flight)
        x = state
        for action in pending:
            x = self.model.step(x, action.to(dtype=state.dtype, device=state.device))
        return x
