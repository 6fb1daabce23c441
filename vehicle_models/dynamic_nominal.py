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
``with_dt``, ``linearize``). The native kernel is five-state: ``controller.native.supports``
refuses both, and ``backend: auto`` runs the torch planners.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vehicle_models.dynamics import linearize_autodiff
from vehicle_models.integrators import rk4
from vehicle_models.kinematic import Integrator, KinematicBicycle
from vehicle_models.layout import ACTION_DIM, DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM
from vehicle_models.mathops import TORCH
from vehicle_models.params import BicycleParams
from vehicle_models.single_track import SingleTrackParams, single_track_derivative
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
        return single_track_derivative(TORCH, self.params, state, action, self.kinematic_below)

    def _advance(self, state: Tensor, action: Tensor, h: Tensor | float, n: int) -> Tensor:
        x = state
        for _ in range(n):
            x = rk4(self.derivative, x, action, h)
        return x

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        return self._advance(state, action, self.dt / self.substeps, self.substeps)

    def step_fields(self, state: tuple[Tensor, ...], action: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(self.step(torch.stack(state, -1), torch.stack(action, -1)).unbind(-1))

    def step_by(self, state: Tensor, action: Tensor, dt: Tensor) -> Tensor:
        """``step`` with a per-transition ``dt`` (...,): as many sub-steps as the longest needs."""
        longest = float(dt.max()) if dt.numel() else self.dt
        n = max(1, math.ceil(longest / self.max_substep - 1e-9))
        return self._advance(state, action, (dt / n).unsqueeze(-1), n)

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        return linearize_autodiff(self, state, action)
