"""Dynamic single-track model (CommonRoad ST): the simulator's "true car".

Source: M. Althoff, G. Würsching, "CommonRoad: Vehicle Models", section "Single-Track Model",
and its reference code ``vehiclemodels.vehicle_dynamics_st`` (commonroad-vehicle-models 3.0),
which the tests check this against to 1e-9.

Reference point: the centre of gravity (CoG). State (``State``, CommonRoad order): x, y [m],
steer [rad], v [m/s] (speed of the CoG), yaw [rad], yaw_rate [rad/s], slip [rad] (side-slip
angle at the CoG). Action (``Action``): steer_rate [rad/s], accel [m/s^2].

Inputs are first constrained as CommonRoad does: the steering rate is clipped to its limits and
cut to zero at a steering end stop; the acceleration is clipped to [-a_max, a_lim(v)] with
a_lim = a_max v_switch / v above v_switch (power limit), and cut to zero at a speed limit.
With L = l_f + l_r, normal loads with longitudinal load transfer, and slip angles

    F_zf = m (g l_r - accel h) / L          alpha_f = steer - slip - l_f yaw_rate / v
    F_zr = m (g l_f + accel h) / L          alpha_r =       - slip + l_r yaw_rate / v

and axle lateral forces F_y = tyre(alpha, F_z) (``vehicle_models.tyres``):

    x_dot        = v cos(yaw + slip)
    y_dot        = v sin(yaw + slip)
    steer_dot    = steer_rate
    v_dot        = accel
    yaw_dot      = yaw_rate
    yaw_rate_dot = (l_f F_yf - l_r F_yr) / I_z
    slip_dot     = (F_yf + F_yr) / (m v) - yaw_rate

With the linear tyre, F_y = mu C_S alpha F_z, this is CommonRoad's ST model term by term.
Below |v| = 0.1 m/s, where 1 / v makes the tyre terms singular, CommonRoad switches to the
kinematic model at the CoG, beta = atan(tan(steer) l_r / L), with yaw rate and slip following
it; so does this module. Nothing clips the state: like CommonRoad, only the inputs are limited.

Equations take an ``ops`` adapter (``vehicle_models.mathops``) as the kinematic model does:
``TORCH`` (batched over any leading shape, float32 or float64) or ``CASADI``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from vehicle_models.dynamics import linearize_autodiff
from vehicle_models.integrators import rk4
from vehicle_models.layout import ACTION_DIM, DYNAMIC_STATE_DIM, Action, State
from vehicle_models.mathops import TORCH
from vehicle_models.params import VEHICLE_DIR, named_vehicles
from vehicle_models.tyres import LinearTyre, TyreModel

GRAVITY = 9.81  #: [m/s^2], CommonRoad's value
KINEMATIC_BELOW_MPS = 0.1  #: below this |v| [m/s] the kinematic model applies (CommonRoad's)


class ChassisParams(BaseModel):
    """What CommonRoad's single-track models share: mass, geometry and the actuator and speed
    limits. CommonRoad names in brackets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mass: float = Field(gt=0, description="vehicle mass m [kg] (m)")
    yaw_inertia: float = Field(gt=0, description="moment of inertia about z, I_z [kg m^2] (I_z)")
    l_f: float = Field(gt=0, description="CoG to front axle [m] (a)")
    l_r: float = Field(gt=0, description="CoG to rear axle [m] (b)")
    cog_height: float = Field(ge=0, description="height of the CoG, h [m] (h_s)")
    steer_min: float = Field(-1.066, description="lower steering-angle stop [rad] (steering.min)")
    steer_max: float = Field(1.066, description="upper steering-angle stop [rad] (steering.max)")
    steer_rate_min: float = Field(-0.4, description="lower steering rate [rad/s] (steering.v_min)")
    steer_rate_max: float = Field(0.4, description="upper steering rate [rad/s] (steering.v_max)")
    speed_min: float = Field(-13.9, description="lowest speed [m/s] (longitudinal.v_min)")
    speed_max: float = Field(50.8, description="highest speed [m/s] (longitudinal.v_max)")
    v_switch: float = Field(
        7.319, gt=0, description="above it the drive limit is a_max v_switch / v [m/s]"
    )
    accel_max: float = Field(
        11.5, gt=0, description="largest |acceleration|, a_max [m/s^2] (longitudinal.a_max)"
    )

    @model_validator(mode="after")
    def _check_limits(self) -> ChassisParams:
        for lo, hi in (
            ("steer_min", "steer_max"),
            ("steer_rate_min", "steer_rate_max"),
            ("speed_min", "speed_max"),
        ):
            if not getattr(self, lo) < getattr(self, hi):
                raise ValueError(f"{lo} must be below {hi}")
        return self

    @property
    def wheelbase(self) -> float:
        """L = l_f + l_r [m]."""
        return self.l_f + self.l_r


class SingleTrackParams(ChassisParams):
    """Parameters of the dynamic single-track model. CommonRoad names in brackets."""

    mu: float = Field(gt=0, description="friction coefficient [-] (tire.p_dy1)")
    stiffness_front: float = Field(
        gt=0, description="front cornering stiffness per load and friction, C_Sf [1/rad]"
    )
    stiffness_rear: float = Field(
        gt=0, description="rear cornering stiffness per load and friction, C_Sr [1/rad]"
    )
    tyre: TyreModel = Field(LinearTyre(), description="lateral tyre model of both axles")


def read_vehicle_section(name_or_path: str | Path, section: str) -> dict[str, Any]:
    """One section of a named vehicle (``passenger_car``) or of a YAML file; {} if absent."""
    path = Path(name_or_path)
    if not path.suffix:
        path = VEHICLE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise FileNotFoundError(
                f"unknown vehicle {name_or_path!r}; named sets: {', '.join(named_vehicles())}"
            )
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections")
    return dict(data.get(section) or {})


def load_single_track_params(name_or_path: str | Path, **overrides: Any) -> SingleTrackParams:
    """The ``dynamic:`` section of a named vehicle or YAML file, with fields overridden.

    ``overrides`` replace whole fields, e.g. ``mu=0.8``. ``tyre`` is a model
    (``{"kind": "pacejka", "B": ...}``, a ``PacejkaTyre``) or the name of one in the file's
    ``tyres:`` section (``tyre="pacejka"``).
    """
    data = read_vehicle_section(name_or_path, "dynamic")
    if not data:
        raise ValueError(f"{name_or_path}: no 'dynamic:' section")
    data |= overrides
    if isinstance(data.get("tyre"), str):
        named = read_vehicle_section(name_or_path, "tyres")
        if data["tyre"] not in named:
            known = ", ".join(named) or "none"
            raise ValueError(f"{name_or_path}: unknown tyre {data['tyre']!r}; tyres: {known}")
        data["tyre"] = named[data["tyre"]]
    return SingleTrackParams(**data)


def constrain_steer_rate(ops: Any, p: Any, steer: Any, steer_rate: Any) -> Any:
    """CommonRoad's ``steering_constraints``: zero at an end stop, else clipped."""
    at_stop = ops.either(
        ops.both(steer <= p.steer_min, steer_rate <= 0),
        ops.both(steer >= p.steer_max, steer_rate >= 0),
    )
    return ops.where(
        at_stop, 0.0 * steer_rate, ops.clip(steer_rate, p.steer_rate_min, p.steer_rate_max)
    )


def constrain_accel(ops: Any, p: Any, v: Any, accel: Any) -> Any:
    """CommonRoad's ``acceleration_constraints``: zero at a speed limit, else clipped to
    [-a_max, a_lim(v)], where the drive limit falls as a_max v_switch / v above v_switch."""
    # max(v, v_switch) in the denominator gives a_max below v_switch and never divides by ~0.
    drive_limit = (p.accel_max * p.v_switch) / ops.at_least(v, p.v_switch)
    at_limit = ops.either(
        ops.both(v <= p.speed_min, accel <= 0), ops.both(v >= p.speed_max, accel >= 0)
    )
    clipped = ops.clip(accel, -p.accel_max, p.accel_max)
    return ops.where(at_limit, 0.0 * accel, ops.where(clipped >= drive_limit, drive_limit, clipped))


def single_track_derivative(
    ops: Any, p: Any, x: Any, u: Any, kinematic_below: float = KINEMATIC_BELOW_MPS
) -> Any:
    """Continuous-time single-track model, x_dot = f(x, u). ``p`` has SingleTrackParams' fields.

    Below ``kinematic_below`` [m/s] the kinematic branch applies (CommonRoad: 0.1 m/s; a
    planner's coarse step takes a higher switch, where the tyre terms' 1 / v is not stiff)."""
    steer, v, yaw = ops.field(x, State.STEER), ops.field(x, State.V), ops.field(x, State.YAW)
    yaw_rate, slip = ops.field(x, State.YAW_RATE), ops.field(x, State.SLIP)
    steer_rate = constrain_steer_rate(ops, p, steer, ops.field(u, Action.STEER_RATE))
    accel = constrain_accel(ops, p, v, ops.field(u, Action.ACCEL))
    wheelbase = p.l_f + p.l_r
    kinematic = ops.abs(v) < kinematic_below

    # Dynamic branch. Both branches are evaluated (tensors, symbols); a stand-in speed keeps
    # 1 / v finite where the kinematic branch is taken, so values and gradients stay clean.
    v_tyre = ops.where(kinematic, 0.0 * v + 1.0, v)
    load_front = p.mass * (GRAVITY * p.l_r - accel * p.cog_height) / wheelbase
    load_rear = p.mass * (GRAVITY * p.l_f + accel * p.cog_height) / wheelbase
    alpha_front = steer - slip - p.l_f * yaw_rate / v_tyre
    alpha_rear = -slip + p.l_r * yaw_rate / v_tyre
    force_front = p.tyre.lateral_force(alpha_front, load_front, p.mu, p.stiffness_front, ops=ops)
    force_rear = p.tyre.lateral_force(alpha_rear, load_rear, p.mu, p.stiffness_rear, ops=ops)
    yaw_accel = (p.l_f * force_front - p.l_r * force_rear) / p.yaw_inertia
    slip_dot = (force_front + force_rear) / (p.mass * v_tyre) - yaw_rate

    # Kinematic branch at the CoG (CommonRoad's vehicle_dynamics_ks_cog plus its slip and yaw
    # rate terms). CommonRoad constrains the inputs a second time there; that is idempotent.
    tan_steer = ops.tan(steer)
    cos_steer = ops.cos(steer)
    beta = ops.atan(tan_steer * p.l_r / wheelbase)
    ratio = tan_steer * tan_steer * p.l_r / wheelbase
    beta_dot = (p.l_r * steer_rate) / (wheelbase * cos_steer * cos_steer * (1.0 + ratio * ratio))
    yaw_accel_kin = (
        accel * ops.cos(slip) * tan_steer
        - v * ops.sin(slip) * beta_dot * tan_steer
        + v * ops.cos(slip) * steer_rate / (cos_steer * cos_steer)
    ) / wheelbase

    heading = ops.where(kinematic, yaw + beta, yaw + slip)
    return ops.stack(
        [
            v * ops.cos(heading),
            v * ops.sin(heading),
            steer_rate,
            accel,
            ops.where(kinematic, v * ops.cos(beta) * tan_steer / wheelbase, yaw_rate),
            ops.where(kinematic, yaw_accel_kin, yaw_accel),
            ops.where(kinematic, beta_dot, slip_dot),
        ]
    )


class SingleTrack:
    """Batched torch single-track model stepped by RK4 over ``dt``; a ``Dynamics``.

    Any leading batch shape, float32 or float64 as given. ``linearize`` is autodiff.
    """

    state_dim = DYNAMIC_STATE_DIM
    action_dim = ACTION_DIM

    def __init__(self, params: SingleTrackParams, dt: float):
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.params = params
        self.dt = float(dt)

    def derivative(self, state: Tensor, action: Tensor) -> Tensor:
        """x_dot (..., 7) at ``state`` (..., 7) under ``action`` (..., 2)."""
        return single_track_derivative(TORCH, self.params, state, action)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        """State after holding ``action`` for ``dt`` (one RK4 step)."""
        return rk4(self.derivative, state, action, self.dt)

    def linearize(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        return linearize_autodiff(self, state, action)
