"""Nominal models on the dynamic state (x, y, steer, v, yaw, yaw_rate, slip): what a
semi-parametric model builds on when it is offered the yaw rate and slip the car reports.

- ``KinematicDynamicState`` ("kinematic_dynamic_state"): the kinematic bicycle, unchanged,
  on the first five fields; yaw_rate and slip are carried (zero nominal rate), so the
  residual learns their rates of change from what the logs show, and, reading them as
  inputs, the corrections of the pose they cause. With a zero residual it predicts the pose
  exactly as the 5-state kinematic bicycle does.
- ``SingleTrackNominal`` ("single_track"): CommonRoad's dynamic single-track derivative
  (``vehicle_models.single_track``) with the linear tyre capped at the friction limit
  (``LimitedLinearTyre``), stepped by RK4 sub-steps; cornering stiffness and mu are what
  ``tools.sysid`` identifies.

Both are ``Dynamics`` with ``state_dim = DYNAMIC_STATE_DIM`` and the methods the
semi-parametric model and the planners use (``step``, ``step_fields``, ``step_by``,
``with_dt``, ``linearize``). The native kernel runs both (7-field builds; the single-track
step and its Jacobians generated from ``single_track_step``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from vehicle_models.dynamics import linearize_autodiff
from vehicle_models.kinematic import Integrator, KinematicBicycle
from vehicle_models.layout import ACTION_DIM, DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM
from vehicle_models.mathops import TORCH
from vehicle_models.params import BicycleParams
from vehicle_models.single_track import (
    GRAVITY,
    SingleTrackParams,
    constrain_accel,
    constrain_steer_rate,
    single_track_derivative,
)
from vehicle_models.tyres import LimitedLinearTyre

#: RK4 sub-step of the single-track nominal [s]: stable above ``PLANNER_KINEMATIC_BELOW_MPS``
#: (the slip mode's rate is about 205 / v 1/s for vehicle 2; RK4 holds up to 2.78 per step).
MAX_SUBSTEP_S = 0.025
#: Below this speed [m/s] the single-track nominal takes CommonRoad's kinematic branch; at a
#: 25 ms sub-step the tyre terms are stiff below about 2 m/s.
PLANNER_KINEMATIC_BELOW_MPS = 3.0

NOMINALS = ("kinematic", "kinematic_dynamic_state", "single_track")


class KinematicDynamicState:
    """The kinematic bicycle on a 7-field state; yaw_rate and slip are held over a step."""

    state_dim = DYNAMIC_STATE_DIM
    action_dim = ACTION_DIM

    def __init__(self, params: BicycleParams, dt: float, integrator: Integrator = "exact"):
        self.kinematic = KinematicBicycle(params, dt, integrator)
        self.params = params
        self.dt = self.kinematic.dt
        self.integrator = integrator

    def with_dt(self, dt: float) -> KinematicDynamicState:
        return KinematicDynamicState(self.params, dt, self.integrator)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        head = self.kinematic.step(state[..., :KINEMATIC_STATE_DIM], action)
        return torch.cat([head, state[..., KINEMATIC_STATE_DIM:]], dim=-1)

    def step_fields(self, state: tuple[Tensor, ...], action: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        head = self.kinematic.step_fields(state[:KINEMATIC_STATE_DIM], action)
        return (*head, *state[KINEMATIC_STATE_DIM:])

    def step_by(self, state: Tensor, action: Tensor, dt: Tensor) -> Tensor:
        head = self.kinematic.step_by(state[..., :KINEMATIC_STATE_DIM], action, dt)
        return torch.cat([head, state[..., KINEMATIC_STATE_DIM:]], dim=-1)

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        a5, b5 = self.kinematic.linearize(state[..., :KINEMATIC_STATE_DIM], action)
        batch = state.shape[:-1]
        n, k = DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM
        A = torch.zeros(*batch, n, n, dtype=a5.dtype, device=a5.device)
        A[..., :k, :k] = a5
        A[..., k:, k:] = torch.eye(n - k, dtype=a5.dtype, device=a5.device)
        B = torch.zeros(*batch, n, self.action_dim, dtype=b5.dtype, device=b5.device)
        B[..., :k, :] = b5
        return A, B


def single_track_step(
    ops: Any, p: Any, state: Sequence[Any], action: Sequence[Any], dt: Any, n: int, kinematic_below: Any
) -> tuple[Any, ...]:
    """``n`` RK4 sub-steps of the single-track equations, written for the planner's hot path
    (``SingleTrackNominal``'s step, and the native kernel's, generated from this function).

    The same equations as ``single_track_derivative`` with what is constant over a step hoisted
    out of the sub-steps: the inputs are limited once, at the step's start (CommonRoad limits
    them at every evaluation; they differ only when a limit is crossed within the step), so
    steer and speed move linearly and the normal loads are fixed. Below ``kinematic_below``
    the tyre terms use that speed, and the step ends on the kinematic yaw rate and slip
    (CommonRoad's low-speed switch). ``state`` and the result are the seven fields.
    """
    px, py, steer, v, yaw, rate, slip = state[:7]
    steer_rate = constrain_steer_rate(ops, p, steer, action[0])
    accel = constrain_accel(ops, p, v, action[1])
    wheelbase = p.l_f + p.l_r
    load_front = (p.mass / wheelbase) * (GRAVITY * p.l_r - p.cog_height * accel)
    load_rear = (p.mass / wheelbase) * (GRAVITY * p.l_f + p.cog_height * accel)
    peak_front, peak_rear = p.mu * load_front, p.mu * load_rear
    gain_front, gain_rear = p.stiffness_front * peak_front, p.stiffness_rear * peak_rear
    inv_mass, inv_inertia = 1.0 / p.mass, 1.0 / p.yaw_inertia

    def lateral(steer_now: Any, v_now: Any, rate_now: Any, slip_now: Any) -> tuple[Any, Any]:
        inv_v = 1.0 / ops.at_least(v_now, kinematic_below)
        front = ops.clip(gain_front * (steer_now - slip_now - p.l_f * rate_now * inv_v), -peak_front, peak_front)
        rear = ops.clip(gain_rear * (p.l_r * rate_now * inv_v - slip_now), -peak_rear, peak_rear)
        return (p.l_f * front - p.l_r * rear) * inv_inertia, (front + rear) * inv_mass * inv_v - rate_now

    def pose_rate(v_now: Any, heading: Any) -> tuple[Any, Any]:
        return v_now * ops.cos(heading), v_now * ops.sin(heading)

    h = dt / n
    for _ in range(n):
        steer_mid, v_mid = steer + (0.5 * h) * steer_rate, v + (0.5 * h) * accel
        steer_end, v_end = steer + h * steer_rate, v + h * accel
        ra1, sd1 = lateral(steer, v, rate, slip)
        x1, y1 = pose_rate(v, yaw + slip)
        r2, s2, yaw2 = rate + (0.5 * h) * ra1, slip + (0.5 * h) * sd1, yaw + (0.5 * h) * rate
        ra2, sd2 = lateral(steer_mid, v_mid, r2, s2)
        x2, y2 = pose_rate(v_mid, yaw2 + s2)
        r3, s3, yaw3 = rate + (0.5 * h) * ra2, slip + (0.5 * h) * sd2, yaw + (0.5 * h) * r2
        ra3, sd3 = lateral(steer_mid, v_mid, r3, s3)
        x3, y3 = pose_rate(v_mid, yaw3 + s3)
        r4, s4, yaw4 = rate + h * ra3, slip + h * sd3, yaw + h * r3
        ra4, sd4 = lateral(steer_end, v_end, r4, s4)
        x4, y4 = pose_rate(v_end, yaw4 + s4)
        sixth = h / 6.0
        px = px + sixth * (x1 + 2.0 * (x2 + x3) + x4)
        py = py + sixth * (y1 + 2.0 * (y2 + y3) + y4)
        yaw = yaw + sixth * (rate + 2.0 * (r2 + r3) + r4)
        rate = rate + sixth * (ra1 + 2.0 * (ra2 + ra3) + ra4)
        slip = slip + sixth * (sd1 + 2.0 * (sd2 + sd3) + sd4)
        steer, v = steer_end, v_end
    slow = v < kinematic_below
    tan_steer = ops.tan(steer)
    kinematic_slip = ops.atan(tan_steer * (p.l_r / wheelbase))
    kinematic_rate = v * ops.cos(kinematic_slip) * tan_steer / wheelbase
    return px, py, steer, v, yaw, ops.where(slow, kinematic_rate, rate), ops.where(slow, kinematic_slip, slip)


def limited(params: SingleTrackParams) -> SingleTrackParams:
    """``params`` with the friction-limited linear tyre (the nominal's tyre)."""
    return params.model_copy(update={"tyre": LimitedLinearTyre()})


class SingleTrackNominal:
    """CommonRoad's single-track model, friction-limited linear tyres, RK4 sub-steps."""

    state_dim = DYNAMIC_STATE_DIM
    action_dim = ACTION_DIM

    def __init__(
        self,
        params: SingleTrackParams,
        dt: float,
        max_substep: float = MAX_SUBSTEP_S,
        kinematic_below: float = PLANNER_KINEMATIC_BELOW_MPS,
    ):
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        if not isinstance(params.tyre, LimitedLinearTyre):
            params = limited(params)
        self.params = params
        self.dt = float(dt)
        self.max_substep = float(max_substep)
        self.kinematic_below = float(kinematic_below)
        self.substeps = max(1, math.ceil(self.dt / self.max_substep - 1e-9))

    def with_dt(self, dt: float) -> SingleTrackNominal:
        return SingleTrackNominal(self.params, dt, self.max_substep, self.kinematic_below)

    def derivative(self, state: Tensor, action: Tensor) -> Tensor:
        """CommonRoad's single-track derivative with this nominal's tyre and speed switch."""
        return single_track_derivative(TORCH, self.params, state, action, self.kinematic_below)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        fields = self._advance(tuple(state.unbind(-1)), tuple(action.unbind(-1)), self.dt, self.substeps)
        return torch.stack(fields, -1)

    def step_fields(self, state: tuple[Tensor, ...], action: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return self._advance(state, action, self.dt, self.substeps)

    def step_by(self, state: Tensor, action: Tensor, dt: Tensor) -> Tensor:
        """``step`` with a per-transition ``dt`` (...,): as many sub-steps as the longest needs."""
        longest = float(dt.max()) if dt.numel() else self.dt
        n = max(1, math.ceil(longest / self.max_substep - 1e-9))
        return torch.stack(self._advance(tuple(state.unbind(-1)), tuple(action.unbind(-1)), dt, n), -1)

    def _advance(
        self, state: tuple[Tensor, ...], action: tuple[Tensor, ...], dt: Tensor | float, n: int
    ) -> tuple[Tensor, ...]:
        return single_track_step(TORCH, self.params, state, action, dt, n, self.kinematic_below)

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        return linearize_autodiff(self, state, action)
