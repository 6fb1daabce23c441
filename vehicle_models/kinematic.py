"""Kinematic bicycle: the controller's parametric model.

Reference point at distance l_r ahead of the rear axle; effective wheel angle
delta = steer_gain * steer + steer_offset; body slip beta = atan(l_r / L * tan(delta)):

    x_dot     = v cos(yaw + beta)
    y_dot     = v sin(yaw + beta)
    steer_dot = steer_rate          (zero where the steering limit is reached)
    v_dot     = accel               (zero where the speed limit is reached)
    yaw_dot   = v cos(beta) tan(delta) / L

With l_r = 0 this is CommonRoad's kinematic single-track model (KS, reference on the rear axle).

Discretisations:
- ``exact``: steer and speed advance exactly (linear in time, clipped at their limits); the
  pose moves along the circular arc of the mid-step steer and speed, which is the exact
  solution whenever steer and speed are constant over the step, and second order otherwise.
- ``rk4``, ``euler``: the continuous dynamics through the named integrator, then clipping.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from vehicle_models.integrators import euler, rk4
from vehicle_models.layout import KINEMATIC_STATE_DIM, ACTION_DIM, Action, State
from vehicle_models.mathops import TORCH, TORCH_FIELDS
from vehicle_models.params import BicycleParams

Integrator = Literal["exact", "rk4", "euler"]


def kinematic_derivative(ops: Any, p: Any, x: Any, u: Any) -> Any:
    """Continuous-time kinematic bicycle, x_dot = f(x, u). ``p`` has BicycleParams' fields."""
    steer, v, yaw = ops.field(x, State.STEER), ops.field(x, State.V), ops.field(x, State.YAW)
    steer_rate = ops.clip(ops.field(u, Action.STEER_RATE), p.steer_rate_min, p.steer_rate_max)
    accel = ops.clip(ops.field(u, Action.ACCEL), p.accel_min, p.accel_max)
    # CommonRoad's state-limit rule: a rate that pushes further past a limit is cut to zero.
    steer_dot = ops.where(
        ops.either(
            ops.both(steer <= p.steer_min, steer_rate < 0),
            ops.both(steer >= p.steer_max, steer_rate > 0),
        ),
        0.0 * steer_rate,
        steer_rate,
    )
    v_dot = ops.where(
        ops.either(ops.both(v <= p.speed_min, accel < 0), ops.both(v >= p.speed_max, accel > 0)),
        0.0 * accel,
        accel,
    )
    delta = p.steer_gain * steer + p.steer_offset
    tan_delta = ops.tan(delta)
    beta = ops.atan((p.ref_to_rear / p.wheelbase) * tan_delta)
    heading = yaw + beta
    return ops.stack(
        [
            v * ops.cos(heading),
            v * ops.sin(heading),
            steer_dot,
            v_dot,
            v * ops.cos(beta) * tan_delta / p.wheelbase,
        ]
    )


def kinematic_exact_step(ops: Any, p: Any, x: Any, u: Any, dt: float) -> Any:
    """One ``exact`` step (see module docstring)."""
    px, py = ops.field(x, State.X), ops.field(x, State.Y)
    steer, v, yaw = ops.field(x, State.STEER), ops.field(x, State.V), ops.field(x, State.YAW)
    steer_rate = ops.clip(ops.field(u, Action.STEER_RATE), p.steer_rate_min, p.steer_rate_max)
    accel = ops.clip(ops.field(u, Action.ACCEL), p.accel_min, p.accel_max)
    steer_next = ops.clip(steer + steer_rate * dt, p.steer_min, p.steer_max)
    v_next = ops.clip(v + accel * dt, p.speed_min, p.speed_max)
    steer_mid = 0.5 * (steer + steer_next)
    v_mid = 0.5 * (v + v_next)
    tan_delta = ops.tan(p.steer_gain * steer_mid + p.steer_offset)
    beta = ops.atan((p.ref_to_rear / p.wheelbase) * tan_delta)
    yaw_change = v_mid * ops.cos(beta) * tan_delta * (dt / p.wheelbase)
    heading_mid = yaw + beta + 0.5 * yaw_change
    arc_length = v_mid * dt * ops.sinc(0.5 * yaw_change)
    return ops.stack(
        [
            px + arc_length * ops.cos(heading_mid),
            py + arc_length * ops.sin(heading_mid),
            steer_next,
            v_next,
            yaw + yaw_change,
        ]
    )


def kinematic_step(ops: Any, p: Any, x: Any, u: Any, dt: float, integrator: Integrator) -> Any:
    """One discrete step of the kinematic bicycle with the named discretisation."""
    if integrator == "exact":
        return kinematic_exact_step(ops, p, x, u, dt)
    scheme = {"rk4": rk4, "euler": euler}[integrator]
    x_next = scheme(lambda xx, uu: kinematic_derivative(ops, p, xx, uu), x, u, dt)
    # The integrator may overshoot a state limit within the step; clip like the exact scheme.
    return ops.stack(
        [
            ops.field(x_next, State.X),
            ops.field(x_next, State.Y),
            ops.clip(ops.field(x_next, State.STEER), p.steer_min, p.steer_max),
            ops.clip(ops.field(x_next, State.V), p.speed_min, p.speed_max),
            ops.field(x_next, State.YAW),
        ]
    )


class KinematicBicycle:
    """Batched torch kinematic bicycle; a ``Dynamics``.

    ``linearize`` returns exact Jacobians from the CasADi twin (same equations), evaluated in
    float64 and cast to the input's dtype.
    """

    state_dim = KINEMATIC_STATE_DIM
    action_dim = ACTION_DIM

    def __init__(self, params: BicycleParams, dt: float, integrator: Integrator = "exact"):
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        if integrator not in ("exact", "rk4", "euler"):
            raise ValueError(f"unknown integrator {integrator!r}; use exact, rk4 or euler")
        self.params = params
        self.dt = float(dt)
        self.integrator: Integrator = integrator
        self._jacobian = None  # built on first use: CasADi graph construction is not free

    def with_dt(self, dt: float) -> "KinematicBicycle":
        return KinematicBicycle(self.params, dt, self.integrator)

    def derivative(self, state: Tensor, action: Tensor) -> Tensor:
        return kinematic_derivative(TORCH, self.params, state, action)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        return kinematic_step(TORCH, self.params, state, action, self.dt, self.integrator)

    def step_fields(self, state: tuple[Tensor, ...], action: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """``step`` on per-field tensors (structure of arrays), for compiled rollouts."""
        if self.integrator != "exact":
            stacked = self.step(torch.stack(state, -1), torch.stack(action, -1))
            return tuple(stacked.unbind(-1))
        return kinematic_exact_step(TORCH_FIELDS, self.params, state, action, self.dt)

    def step_by(self, state: Tensor, action: Tensor, dt: Tensor) -> Tensor:
        """``step`` with a per-transition step length ``dt`` of shape (...) (e.g. from logs)."""
        # The exact scheme scales scalar fields, the integrators whole state vectors.
        dt = dt if self.integrator == "exact" else dt.unsqueeze(-1)
        return kinematic_step(TORCH, self.params, state, action, dt, self.integrator)

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        if self._jacobian is None:
            from vehicle_models.kinematic_casadi import BatchedJacobian

            self._jacobian = BatchedJacobian(self.params, self.dt, self.integrator)
        A, B = self._jacobian(
            state.detach().cpu().double().numpy(), action.detach().cpu().double().numpy()
        )
        return (
            torch.from_numpy(A).to(device=state.device, dtype=state.dtype),
            torch.from_numpy(B).to(device=state.device, dtype=state.dtype),
        )
