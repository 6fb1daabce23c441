"""The simulator's car: the single-track model behind actuators with dead time and lag.

Signal path of each input i (steer_rate, accel):

    command at t --dead time T_i--> target c_i from t + T_i --lag tau_i--> a_i --> ST model

- dead time: a FIFO of commands; input i follows the latest command sent at or before
  t - T_i, zero before the first. A release that falls inside a control period splits the
  integration there, so the delay is exact whatever the substep.
- lag: first-order, tau_i a_i' = c_i - a_i, solved exactly (a_i(s) = c_i + (a_i(0) - c_i)
  exp(-s / tau_i)); tau_i = 0 passes the target straight through.
- the vehicle model is integrated by RK4 with the lagged input evaluated at each stage's time,
  in substeps of at most ``substep`` seconds, shorter where the model is stiff: at low speed
  for the single-track model (``vehicle_models.single_track``, tyre terms ~1 / v), at low
  wheel speed for the drift model (``vehicle_models.drift``, wheel modes ~6000 / u_w).
  Which model runs follows the type of ``TrueCarConfig.vehicle``; ``CARS`` names them.

``advance`` is the pure core: (plant state, action, period) -> plant state. ``TrueCar`` wraps
it for the simulator: one car in float64 via ``SCALAR`` (Python floats, ~50x faster than torch
on a 7-element state); ``advance`` with ``TORCH`` runs the same arithmetic on tensors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vehicle_models.drift import (
    DRIFT_STATE_DIM,
    WHEEL_FRONT,
    WHEEL_REAR,
    DriftParams,
    drift_derivative,
    load_drift_params,
    rolling_wheel_speeds,
    stable_drift_substep,
    wheel_ground_speeds,
)
from vehicle_models.angles import wrap_angle
from vehicle_models.layout import ACTION_DIM, DYNAMIC_STATE_DIM, KINEMATIC_STATE_DIM, Action, State
from vehicle_models.mathops import SCALAR, ScalarOps  # noqa: F401  (ScalarOps: re-exported)
from vehicle_models.single_track import (
    KINEMATIC_BELOW_MPS,
    SingleTrackParams,
    load_single_track_params,
    read_vehicle_section,
    single_track_derivative,
)

#: Stable RK4 substep per unit speed [s / (m/s)]: the fastest tyre mode of vehicle 2 decays
#: at up to ~430 / v 1/s (hard braking), and RK4 is stable to |lambda h| ~ 2.8.
STABLE_SUBSTEP_PER_SPEED = 0.005
TIME_TOLERANCE = 1e-9  #: [s] events closer than this coincide (periods are summed in floats)




class InputTimes(BaseModel):
    """A time per input [s]; a bare number in a config sets both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steer_rate: float = Field(0.0, ge=0, description="for the steering-rate input [s]")
    accel: float = Field(0.0, ge=0, description="for the acceleration input [s]")

    def per_input(self) -> tuple[float, float]:
        """In ``Action`` order."""
        return (self.steer_rate, self.accel)


class ActuatorConfig(BaseModel):
    """Actuators between the controller's command and the vehicle, and the integration step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lag: InputTimes = Field(
        InputTimes(), description="first-order time constant per input [s]; 0: none"
    )
    dead_time: InputTimes = Field(
        InputTimes(), description="delay from command to actuator per input [s]; 0: none"
    )
    substep: float = Field(0.002, gt=0, le=0.01, description="longest RK4 substep [s]")

    @field_validator("lag", "dead_time", mode="before")
    @classmethod
    def _same_for_both(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"steer_rate": value, "accel": value}
        return value


IDEAL_ACTUATORS = ActuatorConfig()  #: no lag, no dead time


#: True-car models by name: ``st`` the single-track model (``dynamic:`` section of a vehicle
#: file), ``std`` the drift model (``drift:`` section).
CARS = ("st", "std")


class TrueCarConfig(BaseModel):
    """The simulator's car: vehicle (with its tyre model) and actuators."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vehicle: SingleTrackParams | DriftParams
    actuators: ActuatorConfig = IDEAL_ACTUATORS

    @property
    def car(self) -> str:
        """``st`` or ``std``."""
        return "std" if isinstance(self.vehicle, DriftParams) else "st"


def load_actuators(name_or_path: str | Path, **overrides: Any) -> ActuatorConfig:
    """The ``actuators:`` section of a named vehicle or YAML file, with fields overridden."""
    return ActuatorConfig(**(read_vehicle_section(name_or_path, "actuators") | overrides))


def load_true_car_config(
    name_or_path: str | Path, car: str = "st", **overrides: Any
) -> TrueCarConfig:
    """The ``car`` model's section (``CARS``) and ``actuators:`` of a named vehicle or YAML file.

    Each override goes to the section with that field: ``dead_time=0.04`` to the actuators,
    ``mu=0.8`` or ``tyre={"kind": "pacejka"}`` to the single-track vehicle, ``mass=1200`` to
    either model.
    """
    if car not in CARS:
        raise ValueError(f"unknown car {car!r}; cars: {', '.join(CARS)}")
    vehicle_fields = set((SingleTrackParams if car == "st" else DriftParams).model_fields) | {"mu"}
    unknown = set(overrides) - set(ActuatorConfig.model_fields) - vehicle_fields
    if unknown:
        raise ValueError(f"unknown true-car parameter(s) of {car}: {', '.join(sorted(unknown))}")
    actuator_overrides = {k: v for k, v in overrides.items() if k in ActuatorConfig.model_fields}
    vehicle_overrides = {k: v for k, v in overrides.items() if k not in actuator_overrides}
    load = load_single_track_params if car == "st" else load_drift_params
    return TrueCarConfig(
        vehicle=load(name_or_path, **vehicle_overrides),
        actuators=load_actuators(name_or_path, **actuator_overrides),
    )


def default_car(name_or_path: str | Path) -> str:
    """The ``car:`` a vehicle file names for the simulator (``st`` when it names none)."""
    car = read_vehicle_section(name_or_path, "simulator").get("car", "st")
    if car not in CARS:
        raise ValueError(f"{name_or_path}: unknown simulator car {car!r}; cars: {', '.join(CARS)}")
    return str(car)


class Command(NamedTuple):
    sent: float  #: when the controller sent it [s]
    action: Any  #: (..., 2), ``Action`` layout


class PlantState(NamedTuple):
    """Everything the true car carries from one period to the next."""

    vehicle: Any  #: (..., 7) single-track or (..., 9) drift state, ``State`` layout first
    actuators: Any  #: (..., 2) actuator outputs: what the vehicle receives now
    commands: tuple[Command, ...]  #: oldest first; the first is in force for every input
    time: float  #: [s]


def initial_plant_state(vehicle_state: Any) -> PlantState:
    """At rest: actuators at zero, a zero command in force since forever."""
    zeros = 0.0 * vehicle_state[..., : len(Action)]
    return PlantState(vehicle_state, zeros, (Command(-math.inf, zeros),), 0.0)


def stable_substep(speed: float, substep: float) -> float:
    """Longest RK4 substep [s] at ``speed`` [m/s] that keeps the tyre modes stable."""
    # Below the switch speed the kinematic model applies, but the next stage may not.
    return min(substep, STABLE_SUBSTEP_PER_SPEED * max(speed, KINEMATIC_BELOW_MPS))


def commanded(
    ops: Any, commands: tuple[Command, ...], dead_times: tuple[float, ...], t: float
) -> Any:
    """Target per input at time ``t``: the latest command sent at or before t - T_i."""
    targets = []
    for i, dead in enumerate(dead_times):
        released = [c for c in commands if c.sent + dead <= t + TIME_TOLERANCE]
        targets.append(ops.field(released[-1].action, i))
    return ops.stack(targets)


def _lagged(ops: Any, start: Any, target: Any, decays: tuple[float, ...]) -> Any:
    return ops.stack(
        [
            ops.field(target, i) + (ops.field(start, i) - ops.field(target, i)) * d
            for i, d in enumerate(decays)
        ]
    )


def _decays(lags: tuple[float, ...], s: float) -> tuple[float, ...]:
    return tuple(0.0 if tau == 0.0 else math.exp(-s / tau) for tau in lags)


def _smallest(values: Any) -> float:
    return float(values.min()) if hasattr(values, "min") else float(values)


def integrate_segment(
    ops: Any, config: TrueCarConfig, x: Any, applied: Any, target: Any, duration: float
) -> tuple[Any, Any]:
    """Vehicle state and actuator outputs after ``duration`` seconds with a constant target."""
    p, lags, longest = config.vehicle, config.actuators.lag.per_input(), config.actuators.substep
    if isinstance(p, DriftParams):
        f = lambda xx, uu: drift_derivative(ops, p, xx, uu)

        def substep_at(xx: Any) -> float:
            front, rear = wheel_ground_speeds(ops, p, xx)
            return stable_drift_substep(min(_smallest(front), _smallest(rear)), longest)
    else:
        f = lambda xx, uu: single_track_derivative(ops, p, xx, uu)

        def substep_at(xx: Any) -> float:
            return stable_substep(_smallest(abs(xx[..., State.V])), longest)

    remaining = duration
    while remaining > TIME_TOLERANCE:
        # Batched states share one clock: the slowest sets the substep.
        h = min(substep_at(x), remaining)
        if remaining - h < TIME_TOLERANCE:
            h = remaining
        u0 = _lagged(ops, applied, target, _decays(lags, 0.0))
        u_mid = _lagged(ops, applied, target, _decays(lags, 0.5 * h))
        u1 = _lagged(ops, applied, target, _decays(lags, h))
        k1 = f(x, u0)
        k2 = f(x + (0.5 * h) * k1, u_mid)
        k3 = f(x + (0.5 * h) * k2, u_mid)
        k4 = f(x + h * k3, u1)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        applied = u1
        remaining -= h
    return x, applied


def advance(
    ops: Any, config: TrueCarConfig, plant: PlantState, action: Any, period: float
) -> PlantState:
    """Send ``action`` (..., 2) at ``plant.time`` and run the car for ``period`` seconds. Pure."""
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    start, end = plant.time, plant.time + period
    dead_times = config.actuators.dead_time.per_input()
    commands = plant.commands + (Command(start, action),)
    releases = {c.sent + d for c in commands for d in dead_times}
    splits = sorted(t for t in releases if start + TIME_TOLERANCE < t < end - TIME_TOLERANCE)
    x, applied = plant.vehicle, plant.actuators
    for t0, t1 in zip([start, *splits], [*splits, end]):
        target = commanded(ops, commands, dead_times, t0)
        x, applied = integrate_segment(ops, config, x, applied, target, t1 - t0)
    # Drop commands that a later one has replaced for every input.
    latest_dead = max(dead_times)
    while len(commands) > 1 and commands[1].sent + latest_dead <= end + TIME_TOLERANCE:
        commands = commands[1:]
    return PlantState(x, applied, commands, end)


def _as_float64(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


class TrueCar:
    """The simulator's plant: one car, ``reset(state)`` then ``step(action, period)``.

    Computes in float64 numpy. ``step`` takes the action as a numpy array, a torch tensor or a
    sequence of floats, and returns the new state (7,) as a numpy array, or as a tensor of the
    action's dtype and device when the action is a tensor. The drift model's wheel speeds stay
    inside (``plant.vehicle`` holds all nine); what the car reports is the seven wire fields.
    """

    state_dim = DYNAMIC_STATE_DIM
    action_dim = ACTION_DIM

    def __init__(
        self,
        vehicle: SingleTrackParams | DriftParams,
        actuators: ActuatorConfig = IDEAL_ACTUATORS,
    ):
        self.config = TrueCarConfig(vehicle=vehicle, actuators=actuators)
        self.plant = initial_plant_state(self._full_state(np.zeros(DYNAMIC_STATE_DIM)))

    @classmethod
    def from_config(cls, config: TrueCarConfig) -> TrueCar:
        return cls(config.vehicle, config.actuators)

    @classmethod
    def named(cls, vehicle: str | Path, car: str = "st", **overrides: Any) -> TrueCar:
        """A named vehicle (``passenger_car``) or YAML file; see ``load_true_car_config``."""
        return cls.from_config(load_true_car_config(vehicle, car, **overrides))

    @property
    def params(self) -> SingleTrackParams | DriftParams:
        return self.config.vehicle

    @property
    def car(self) -> str:
        """``st`` or ``std``."""
        return self.config.car

    @property
    def actuators(self) -> ActuatorConfig:
        return self.config.actuators

    @property
    def state(self) -> np.ndarray:
        """Vehicle state (7,) as reported on the wire, a copy; slip wrapped to [-pi, pi)
        (the models integrate it unwrapped through a spin)."""
        x = self.plant.vehicle[:DYNAMIC_STATE_DIM].copy()
        if abs(x[State.SLIP]) >= math.pi:
            x[State.SLIP] = float(wrap_angle(x[State.SLIP]))
        return x

    @property
    def wheel_speeds(self) -> tuple[float, float] | None:
        """Front and rear wheel angular speeds [rad/s] (drift model), else None."""
        if self.plant.vehicle.shape[-1] < DRIFT_STATE_DIM:
            return None
        return float(self.plant.vehicle[WHEEL_FRONT]), float(self.plant.vehicle[WHEEL_REAR])

    def _full_state(self, x: np.ndarray) -> np.ndarray:
        """The model's state from the seven wire fields: the drift model's wheels roll freely."""
        if not isinstance(self.params, DriftParams):
            return x
        return np.concatenate([x, rolling_wheel_speeds(SCALAR, self.params, x)])

    @property
    def applied(self) -> np.ndarray:
        """Actuator outputs (2,) the vehicle receives now, a copy."""
        return self.plant.actuators.copy()

    @property
    def time(self) -> float:
        """Seconds since ``reset``."""
        return self.plant.time

    def reset(self, state: Any) -> None:
        """Place the car at ``state`` (5,) or (7,); actuators at rest, no command in flight.

        A missing or NaN yaw_rate / slip (a kinematic state) starts at 0.
        """
        given = _as_float64(state).reshape(-1)
        if given.shape[0] not in (KINEMATIC_STATE_DIM, DYNAMIC_STATE_DIM):
            raise ValueError(f"state must have 5 or 7 entries, got {given.shape[0]}")
        x = np.zeros(DYNAMIC_STATE_DIM)
        x[: given.shape[0]] = given
        x[KINEMATIC_STATE_DIM:] = np.nan_to_num(x[KINEMATIC_STATE_DIM:], nan=0.0)
        if not np.isfinite(x).all():
            raise ValueError(f"state must be finite, got {given}")
        self.plant = initial_plant_state(self._full_state(x))

    def step(self, action: Any, period: float) -> Any:
        """Send ``action`` (2,) now and run ``period`` seconds; the new state (7,)."""
        u = _as_float64(action).reshape(ACTION_DIM)
        self.plant = advance(SCALAR, self.config, self.plant, u, float(period))
        if isinstance(action, torch.Tensor):
            return torch.tensor(self.state, dtype=action.dtype, device=action.device)
        return self.state
