"""Semi-parametric model: a nominal model plus a learned correction; itself a ``Dynamics``.

    x_next = F_nom(x, u) + dt * P(yaw) g(z(x, u))

The nominal is the kinematic bicycle (5 fields), or one of the dynamic-state nominals of
``vehicle_models.dynamic_nominal`` (7 fields: the kinematic bicycle carrying yaw_rate and
slip, or the friction-limited single-track model); the state has the nominal's fields.

``g`` is the residual ensemble (mean over members); it predicts a correction *rate* on the
declared state fields, so one network serves any step length near the one it was trained on
(the daemon's delay compensation steps at the control period, the planner at its own dt).
``z`` holds the declared input fields of x (never position or yaw: the correction must not
depend on where the car is or which way it points) and the action. ``P(yaw)`` rotates the
position correction from the body frame (longitudinal, lateral) into the world frame.

The model builds its own training targets (``training_pairs``), so training and run time
share one definition of features and targets.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from vehicle_models.angles import wrap_angle
from vehicle_models.dynamic_nominal import KinematicDynamicState, SingleTrackNominal
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.layout import State
from vehicle_models.mathops import TORCH
from vehicle_models.residual import (
    EnsembleOutput,
    FusedWeights,
    ResidualEnsemble,
    fused_forward,
    fused_to,
)

DEFAULT_INPUT_FIELDS: tuple[State, ...] = (State.STEER, State.V)
#: The residual corrects the vehicle's motion, never the steering angle. The angle is an actuator
#: state: it moves by the commanded rate after the dead time that sysid fits, so what the nominal
#: misses there is the actuator's memory of earlier commands, which the residual cannot see. Fed
#: closed-loop data, it learned the controller's habits instead (large angles at speed are
#: followed by unwinding: "the wheel self-centres"), and a planner that optimised through that
#: correction steered the car off a straight (docs/racing.md, "Learning at the limit").
DEFAULT_OUTPUT_FIELDS: tuple[State, ...] = (State.X, State.Y, State.V, State.YAW)
#: A dynamic-state model reads the reported yaw rate and slip and corrects every motion field.
DYNAMIC_INPUT_FIELDS: tuple[State, ...] = (State.STEER, State.V, State.YAW_RATE, State.SLIP)
DYNAMIC_OUTPUT_FIELDS: tuple[State, ...] = tuple(f for f in State if f != State.STEER)
#: Fields corrected by a plain rate (not rotated like x, y).
def residual_increment(ops: Any, yaw: Any, rates: Sequence[Any], dt: Any) -> list[Any]:
    """The residual's increment of each state field over dt, world frame, from its correction
    rates, one per state field (zero where it corrects none): x and y are corrected along and
    across the car's heading ``yaw``, the other fields directly. The equation of ``step`` (and,
    generated from it, of the native kernel's)."""
    x, y = int(State.X), int(State.Y)
    increment = [dt * rate for rate in rates]
    cos_yaw, sin_yaw = ops.cos(yaw), ops.sin(yaw)
    increment[x] = dt * (cos_yaw * rates[x] - sin_yaw * rates[y])
    increment[y] = dt * (sin_yaw * rates[x] + cos_yaw * rates[y])
    return increment


def default_fields(state_dim: int) -> tuple[tuple[State, ...], tuple[State, ...]]:
    """The residual's (input, output) fields for a nominal with ``state_dim`` fields."""
    if state_dim == len(State):
        return DYNAMIC_INPUT_FIELDS, DYNAMIC_OUTPUT_FIELDS
    return DEFAULT_INPUT_FIELDS, DEFAULT_OUTPUT_FIELDS


class TrainingPairs(NamedTuple):
    features: Tensor  #: (N, len(input_fields) + nu)
    targets: Tensor  #: (N, len(output_fields)) correction rates in the body frame


class SemiParametricModel:
    """Nominal model plus residual ensemble; batched over any leading shape."""

    def __init__(
        self,
        nominal: KinematicBicycle | KinematicDynamicState | SingleTrackNominal,
        residual: ResidualEnsemble,
        input_fields: tuple[State, ...] = DEFAULT_INPUT_FIELDS,
        output_fields: tuple[State, ...] = DEFAULT_OUTPUT_FIELDS,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        if State.X in input_fields or State.Y in input_fields or State.YAW in input_fields:
            raise ValueError("residual inputs must not include position or yaw")
        if (State.X in output_fields) != (State.Y in output_fields):
            raise ValueError("the residual corrects x and y together (a body-frame vector)")
        beyond = [State(f).name.lower() for f in (*input_fields, *output_fields) if int(f) >= nominal.state_dim]
        if beyond:
            raise ValueError(
                f"the residual reads or corrects {beyond}, which the {nominal.state_dim}-field nominal "
                "does not have"
            )
        if residual.in_dim != len(input_fields) + nominal.action_dim:
            raise ValueError(
                f"residual takes {residual.in_dim} inputs; fields and action give "
                f"{len(input_fields) + nominal.action_dim}"
            )
        if residual.out_dim != len(output_fields):
            raise ValueError(
                f"residual has {residual.out_dim} outputs for {len(output_fields)} fields"
            )
        self.nominal = nominal
        self.residual = residual
        self.input_fields = tuple(State(f) for f in input_fields)
        self.output_fields = tuple(State(f) for f in output_fields)
        self.state_dim = nominal.state_dim
        self.action_dim = nominal.action_dim
        self.dt = nominal.dt
        self.dtype = dtype
        self.device = torch.device(device)
        self.refresh()
        self._out_index = {int(f): i for i, f in enumerate(self.output_fields)}

    @property
    def ensemble_size(self) -> int:
        return self.residual.ensemble_size

    def refresh(self) -> None:
        """Re-fold the residual's weights (call after training it)."""
        self.fused: FusedWeights = fused_to(self.residual.fused(), self.dtype, self.device)

    def with_dt(self, dt: float) -> "SemiParametricModel":
        return SemiParametricModel(
            self.nominal.with_dt(dt),
            self.residual,
            self.input_fields,
            self.output_fields,
            self.dtype,
            self.device,
        )

    # -- features and corrections --------------------------------------------------------
    def features(self, state: Tensor, action: Tensor) -> Tensor:
        return torch.cat([state[..., list(self.input_fields)], action], dim=-1)

    def _field_rates(self, rates: Tensor, zero: Tensor) -> list[Tensor]:
        """Correction rates (..., out) as one per state field, ``zero`` where none."""
        # Plain ints, not State members: torch.compile recurses on IntEnum list indices.
        return [rates[..., self._out_index[f]] if f in self._out_index else zero for f in range(self.state_dim)]

    def _correction(self, state: Tensor, rates: Tensor) -> Tensor:
        """World-frame state increment over dt from body-frame correction rates (..., out)."""
        yaw = state[..., int(State.YAW)]
        field_rates = self._field_rates(rates, torch.zeros_like(yaw))
        return torch.stack(residual_increment(TORCH, yaw, field_rates, self.dt), dim=-1)

    def _predict(self, state: Tensor, action: Tensor) -> EnsembleOutput:
        z = self.features(state, action)
        flat = z.reshape(-1, z.shape[-1])
        out = fused_forward(self.fused, self.residual.config.activation, flat)
        batch = state.shape[:-1]
        return EnsembleOutput(out.mean.reshape(*batch, -1), out.disagreement.reshape(batch))

    # -- Dynamics --------------------------------------------------------------------------
    def step(self, state: Tensor, action: Tensor) -> Tensor:
        rates = self._predict(state, action).mean
        return self.nominal.step(state, action) + self._correction(state, rates)

    def step_fields(self, state: tuple[Tensor, ...], action: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """``step`` on per-field tensors (K,) each (structure of arrays), for compiled rollouts."""
        z = torch.stack([state[int(f)] for f in self.input_fields] + list(action), dim=-1)
        rates = fused_forward(self.fused, self.residual.config.activation, z).mean
        nominal = self.nominal.step_fields(state, action)
        yaw = state[int(State.YAW)]
        increment = residual_increment(TORCH, yaw, self._field_rates(rates, torch.zeros_like(yaw)), self.dt)
        return tuple(n + d for n, d in zip(nominal, increment))

    def step_with_disagreement(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Next state and the ensemble's disagreement on this transition (..., nx), (...)."""
        out = self._predict(state, action)
        next_state = self.nominal.step(state, action) + self._correction(state, out.mean)
        return next_state, out.disagreement

    def correction(self, state: Tensor, action: Tensor) -> Tensor:
        """The residual part of ``step`` alone (..., nx)."""
        return self._correction(state, self._predict(state, action).mean)

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """The nominal's Jacobians plus the residual's by torch.func, batched over points."""
        A, B = self.nominal.linearize(state, action)
        batch = state.shape[:-1]
        x = state.reshape(-1, self.state_dim).to(self.dtype)
        u = action.reshape(-1, self.action_dim).to(self.dtype)

        def single(xi: Tensor, ui: Tensor) -> Tensor:
            return self.correction(xi.unsqueeze(0), ui.unsqueeze(0))[0]

        dA, dB = vmap(jacrev(single, argnums=(0, 1)))(x, u)
        A = A + dA.reshape(*batch, self.state_dim, self.state_dim).to(A.dtype)
        B = B + dB.reshape(*batch, self.state_dim, self.action_dim).to(B.dtype)
        return A, B

    # -- training targets ------------------------------------------------------------------
    def training_pairs(
        self, states: Tensor, actions: Tensor, next_states: Tensor, dt: Tensor | float
    ) -> TrainingPairs:
        """Features and body-frame correction-rate targets from transitions.

        ``dt`` is each transition's duration (scalar or (N,)); the nominal model steps by it,
        so the target is what the nominal model misses, per second.
        """
        states = states.to(self.dtype)
        actions = actions.to(self.dtype)
        next_states = next_states.to(self.dtype)
        dts = torch.as_tensor(dt, dtype=self.dtype).expand(states.shape[:-1])
        delta = next_states - self.nominal.step_by(states, actions, dts)
        delta[..., State.YAW] = wrap_angle(delta[..., State.YAW])
        miss = delta / dts.unsqueeze(-1)
        c, s = torch.cos(states[..., State.YAW]), torch.sin(states[..., State.YAW])
        along = c * miss[..., State.X] + s * miss[..., State.Y]
        across = -s * miss[..., State.X] + c * miss[..., State.Y]
        body = miss.clone()
        body[..., State.X] = along
        body[..., State.Y] = across
        return TrainingPairs(self.features(states, actions), body[..., list(self.output_fields)])
