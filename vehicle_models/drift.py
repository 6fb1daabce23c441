"""Single-track drift model (CommonRoad STD): the simulator's car with real tyre limits.

Source: M. Althoff, G. Würsching, "CommonRoad: Vehicle Models" (2020), section "Single-Track
Drift Model", and its reference code ``vehiclemodels.vehicle_dynamics_std``
(commonroad-vehicle-models 3.0), which the tests check this against to 1e-9. CommonRoad is a
dev dependency only: nothing here imports it.

State (9, CommonRoad order): the seven ``State`` fields of the single-track model (x, y, steer,
v, yaw, yaw_rate, slip; reference point the centre of gravity), then the front and rear wheel
angular speeds omega_f, omega_r [rad/s] (``WHEEL_FRONT``, ``WHEEL_REAR``). The wire carries the
first seven; the simulator keeps the wheel speeds to itself. Action: steer_rate [rad/s],
accel [m/s^2], constrained first as in ``single_track`` (end stops, drive limit
a_max v_switch / v above v_switch).

With beta the slip angle, psi_dot the yaw rate, delta the steering angle and L = l_f + l_r:

    alpha_f = atan((v sin beta + l_f psi_dot) / (v cos beta)) - delta     (0 below v_min)
    alpha_r = atan((v sin beta - l_r psi_dot) / (v cos beta))
    F_zf = m (g l_r - accel h) / L,   F_zr = m (g l_f + accel h) / L
    u_wf = max(0, v cos beta cos delta + (v sin beta + l_f psi_dot) sin delta),  u_wr = max(0, v cos beta)
    s_i  = 1 - R_w omega_i / max(u_wi, v_min)                              (longitudinal slip)
    F_xi, F_yi: Pacejka magic formula (pure slip) scaled by the combined-slip weights
    T_E = m R_w accel (accel > 0), T_B = m R_w accel (accel <= 0)          (drive / brake torque)

    v_dot        = (-F_yf sin(delta - beta) + F_yr sin beta + F_xr cos beta + F_xf cos(delta - beta)) / m
    yaw_rate_dot = (F_yf cos delta l_f - F_yr l_r + F_xf sin delta l_f) / I_z
    slip_dot     = -psi_dot + (F_yf cos(delta - beta) + F_yr cos beta - F_xr sin beta
                              + F_xf sin(delta - beta)) / (m v)            (0 below v_min)
    omega_f_dot  = (-R_w F_xf + T_sb T_B + T_se T_E) / I_yw                (0 while omega_f < 0)
    omega_r_dot  = (-R_w F_xr + (1 - T_sb) T_B + (1 - T_se) T_E) / I_yw

Around v_s = 0.2 m/s every derivative but x_dot, y_dot, steer_dot is blended with the kinematic
model at the CoG by w = (tanh((v - v_s) / v_b) + 1) / 2, v_b = 0.05 m/s; the kinematic wheel
speeds relax to u_w / R_w with a 0.02 s time constant. Camber is zero, so the camber terms of
CommonRoad's tyre formulas (p_dx3, p_dy3, p_hy*, p_vy*, r_vy3) vanish and are not parameters.

The wheel modes are stiff: about R_w^2 F_z p_kx1 / (I_yw u_w), ~6000 / u_w 1/s for vehicle 2,
so RK4 needs substeps of well under 2 ms at low wheel speed (``stable_drift_substep``).

Equations take an ``ops`` adapter (``vehicle_models.mathops``): ``TORCH`` (batched, any leading
shape) or ``true_car.SCALAR`` (one car on Python floats, what the simulator runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from vehicle_models.integrators import rk4
from vehicle_models.layout import ACTION_DIM, Action, State
from vehicle_models.mathops import TORCH
from vehicle_models.single_track import (
    GRAVITY,
    ChassisParams,
    constrain_accel,
    constrain_steer_rate,
    read_vehicle_section,
)

DRIFT_STATE_DIM = 9
WHEEL_FRONT = 7  #: front wheel angular speed omega_f [rad/s]
WHEEL_REAR = 8  #: rear wheel angular speed omega_r [rad/s]

V_MIN = 0.1  #: below this speed the slip angles and slip_dot are zero [m/s] (CommonRoad's v_s / 2)
BLEND_SPEED = 0.2  #: centre of the kinematic / dynamic blend, v_s [m/s]
BLEND_WIDTH = 0.05  #: width of the blend, v_b [m/s]
KINEMATIC_WHEEL_TIME = 0.02  #: time constant of the kinematic wheel speeds [s]

#: Stable RK4 substep per unit wheel speed [s / (m/s)]: the wheel modes decay at up to
#: ~6100 / u_w 1/s (vehicle 2 braking hard), RK4 is stable to |lambda h| ~ 2.8; a 25 % margin.
STABLE_DRIFT_SUBSTEP_PER_SPEED = 3.5e-4
#: Wheel speed below which the stiffness stops growing: the slip denominators are floored at
#: V_MIN and the dynamic weight fades below BLEND_SPEED (the stiffest point is near 0.25 m/s).
STIFFEST_WHEEL_SPEED = 0.3


class PacejkaCoefficients(BaseModel):
    """CommonRoad's tyre parameters (ADAMS handbook set) at zero camber; names as CommonRoad's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # longitudinal, pure slip
    p_cx1: float = Field(1.6411, description="shape factor C_x [-]")
    p_dx1: float = Field(1.1739, description="peak friction mu_x [-]")
    p_ex1: float = Field(0.46403, description="curvature factor E_x [-]")
    p_kx1: float = Field(22.303, description="slip stiffness per load K_x / F_z [-]")
    p_hx1: float = Field(0.0012297, description="horizontal shift S_hx [-]")
    p_vx1: float = Field(-8.8098e-06, description="vertical shift per load S_vx / F_z [-]")
    # longitudinal, combined slip
    r_bx1: float = Field(13.276, description="slope factor of the combined weight [-]")
    r_bx2: float = Field(-13.778, description="its variation with slip ratio [-]")
    r_cx1: float = Field(1.2568, description="shape factor of the combined weight [-]")
    r_ex1: float = Field(0.65225, description="curvature factor of the combined weight [-]")
    r_hx1: float = Field(0.0050722, description="horizontal shift of the combined weight [rad]")
    # lateral, pure slip
    p_cy1: float = Field(1.3507, description="shape factor C_y [-]")
    p_dy1: float = Field(1.0489, description="peak friction mu_y [-]")
    p_ey1: float = Field(-0.0074722, description="curvature factor E_y [-]")
    p_ky1: float = Field(-21.92, description="cornering stiffness per load K_y / F_z [1/rad]")
    # lateral, combined slip
    r_by1: float = Field(7.1433, description="slope factor of the combined weight [-]")
    r_by2: float = Field(9.1916, description="its variation with slip angle [-]")
    r_by3: float = Field(-0.027856, description="slip-angle shift of that variation [rad]")
    r_cy1: float = Field(1.0719, description="shape factor of the combined weight [-]")
    r_ey1: float = Field(-0.27572, description="curvature factor of the combined weight [-]")
    r_hy1: float = Field(5.7448e-06, description="horizontal shift of the combined weight [-]")
    r_vy1: float = Field(-0.027825, description="slip-induced side force per load [-]")
    r_vy4: float = Field(12.12, description="its variation with slip angle [-]")
    r_vy5: float = Field(1.9, description="its shape with slip ratio [-]")
    r_vy6: float = Field(-10.704, description="its variation with slip ratio [-]")


class DriftParams(ChassisParams):
    """Parameters of the single-track drift model. CommonRoad names in brackets."""

    model: Literal["std"] = Field("std", description="which true-car model these parameters are for")
    wheel_radius: float = Field(gt=0, description="effective wheel radius [m] (R_w)")
    wheel_inertia: float = Field(gt=0, description="wheel inertia about its axle [kg m^2] (I_y_w)")
    brake_front: float = Field(
        0.66, ge=0, le=1, description="share of the brake torque on the front axle [-] (T_sb)"
    )
    drive_front: float = Field(
        0.0, ge=0, le=1, description="share of the drive torque on the front axle [-] (T_se)"
    )
    tyre: PacejkaCoefficients = Field(PacejkaCoefficients(), description="both axles' tyres")

    @property
    def mu(self) -> float:
        """Peak lateral friction coefficient of the tyres [-] (p_dy1)."""
        return self.tyre.p_dy1


def load_drift_params(name_or_path: str | Path, **overrides: Any) -> DriftParams:
    """The ``drift:`` section of a named vehicle or YAML file, with fields overridden.

    ``tyre`` in the file or in ``overrides`` is a mapping of coefficients; those it leaves out
    keep CommonRoad's values. ``mu`` sets the peak lateral friction (p_dy1) and scales the
    longitudinal peak (p_dx1) by the same factor: a wet or worn road, tyre shapes unchanged.
    """
    data = read_vehicle_section(name_or_path, "drift")
    if not data:
        raise ValueError(f"{name_or_path}: no 'drift:' section")
    mu = overrides.pop("mu", None)
    params = DriftParams(**(data | overrides))
    if mu is None:
        return params
    if not mu > 0:
        raise ValueError(f"mu must be positive, got {mu}")
    scale = mu / params.tyre.p_dy1
    tyre = params.tyre.model_copy(update={"p_dy1": mu, "p_dx1": params.tyre.p_dx1 * scale})
    return params.model_copy(update={"tyre": tyre})


def _magic_angle(ops: Any, b: Any, c: float, e: float, x: Any) -> Any:
    """C atan(B x - E (B x - atan(B x))): the argument of the magic formula's sin or cos."""
    bx = b * x
    return c * ops.atan(bx - e * (bx - ops.atan(bx)))


def tyre_forces(
    ops: Any, t: PacejkaCoefficients, slip_ratio: Any, slip_angle: Any, load: Any
) -> tuple[Any, Any]:
    """(F_x, F_y) [N] of one axle: CommonRoad's ``tire_model`` at zero camber, combined slip."""
    # Pure slip. CommonRoad's longitudinal formula takes kappa = -s; its B = K / (C D) with
    # K and D both proportional to F_z, so F_z cancels out of B.
    kappa = -slip_ratio + t.p_hx1
    b_x = t.p_kx1 / (t.p_cx1 * t.p_dx1)
    pure_x = t.p_dx1 * load * ops.sin(_magic_angle(ops, b_x, t.p_cx1, t.p_ex1, kappa) + load * t.p_vx1)
    b_y = t.p_ky1 / (t.p_cy1 * t.p_dy1)
    pure_y = t.p_dy1 * load * ops.sin(_magic_angle(ops, b_y, t.p_cy1, t.p_ey1, slip_angle))

    # Combined slip: each pure force scaled by a cosine weight normalised to 1 at the shift.
    b_xa = t.r_bx1 * ops.cos(ops.atan(t.r_bx2 * slip_ratio))
    weight_x = ops.cos(_magic_angle(ops, b_xa, t.r_cx1, t.r_ex1, slip_angle + t.r_hx1))
    norm_x = ops.cos(_magic_angle(ops, b_xa, t.r_cx1, t.r_ex1, t.r_hx1 + 0.0 * slip_ratio))
    force_x = pure_x / norm_x * weight_x

    b_yk = t.r_by1 * ops.cos(ops.atan(t.r_by2 * (slip_angle - t.r_by3)))
    weight_y = ops.cos(_magic_angle(ops, b_yk, t.r_cy1, t.r_ey1, slip_ratio + t.r_hy1))
    norm_y = ops.cos(_magic_angle(ops, b_yk, t.r_cy1, t.r_ey1, t.r_hy1 + 0.0 * slip_angle))
    induced = (
        t.p_dy1 * load * t.r_vy1 * ops.cos(ops.atan(t.r_vy4 * slip_angle))
        * ops.sin(t.r_vy5 * ops.atan(t.r_vy6 * slip_ratio))
    )
    force_y = pure_y / norm_y * weight_y + induced
    return force_x, force_y


def _positive(ops: Any, x: Any) -> Any:
    return ops.clip(x, 0.0, float("inf"))


def wheel_ground_speeds(ops: Any, p: DriftParams, x: Any) -> tuple[Any, Any]:
    """(u_wf, u_wr) [m/s]: each axle's ground speed along its wheel's heading, floored at 0."""
    steer, v = ops.field(x, State.STEER), ops.field(x, State.V)
    yaw_rate, slip = ops.field(x, State.YAW_RATE), ops.field(x, State.SLIP)
    along = v * ops.cos(slip)
    front = along * ops.cos(steer) + (v * ops.sin(slip) + p.l_f * yaw_rate) * ops.sin(steer)
    return _positive(ops, front), _positive(ops, along)


def drift_derivative(ops: Any, p: DriftParams, x: Any, u: Any) -> Any:
    """Continuous-time drift model, x_dot = f(x, u): state (..., 9), action (..., 2)."""
    steer, v, yaw = ops.field(x, State.STEER), ops.field(x, State.V), ops.field(x, State.YAW)
    yaw_rate, slip = ops.field(x, State.YAW_RATE), ops.field(x, State.SLIP)
    omega_f, omega_r = ops.field(x, WHEEL_FRONT), ops.field(x, WHEEL_REAR)
    steer_rate = constrain_steer_rate(ops, p, steer, ops.field(u, Action.STEER_RATE))
    accel = constrain_accel(ops, p, v, ops.field(u, Action.ACCEL))
    wheelbase = p.l_f + p.l_r
    zero = 0.0 * v

    # Every branch is evaluated (tensors); stand-ins keep the unused one finite.
    moving = v > V_MIN
    v_moving = ops.where(moving, v, zero + 1.0)
    sin_slip, cos_slip = ops.sin(slip), ops.cos(slip)
    forward = v_moving * cos_slip
    forward = ops.where(forward == 0.0, zero + 1e-300, forward)  # CommonRoad divides by zero
    alpha_f = ops.where(moving, ops.atan((v * sin_slip + yaw_rate * p.l_f) / forward) - steer, zero)
    alpha_r = ops.where(moving, ops.atan((v * sin_slip - yaw_rate * p.l_r) / forward), zero)

    load_f = p.mass * (-accel * p.cog_height + GRAVITY * p.l_r) / wheelbase
    load_r = p.mass * (accel * p.cog_height + GRAVITY * p.l_f) / wheelbase
    sin_steer, cos_steer = ops.sin(steer), ops.cos(steer)
    wheel_speed_f, wheel_speed_r = wheel_ground_speeds(ops, p, x)
    slip_ratio_f = 1.0 - p.wheel_radius * omega_f / ops.clip(wheel_speed_f, V_MIN, float("inf"))
    slip_ratio_r = 1.0 - p.wheel_radius * omega_r / ops.clip(wheel_speed_r, V_MIN, float("inf"))
    fx_f, fy_f = tyre_forces(ops, p.tyre, slip_ratio_f, alpha_f, load_f)
    fx_r, fy_r = tyre_forces(ops, p.tyre, slip_ratio_r, alpha_r, load_r)

    driving = accel > 0
    torque = p.mass * p.wheel_radius * accel
    drive_torque = ops.where(driving, torque, zero)
    brake_torque = ops.where(driving, zero, torque)

    sin_rel, cos_rel = ops.sin(steer - slip), ops.cos(steer - slip)
    v_dot = (-fy_f * sin_rel + fy_r * sin_slip + fx_r * cos_slip + fx_f * cos_rel) / p.mass
    yaw_accel = (fy_f * cos_steer * p.l_f - fy_r * p.l_r + fx_f * sin_steer * p.l_f) / p.yaw_inertia
    slip_dot = ops.where(
        moving,
        -yaw_rate
        + (fy_f * cos_rel + fy_r * cos_slip - fx_r * sin_slip + fx_f * sin_rel) / (p.mass * v_moving),
        zero,
    )
    # Negative wheel spin is forbidden: a wheel below zero gets no torque balance.
    omega_f_dot = ops.where(
        omega_f >= 0,
        (-p.wheel_radius * fx_f + p.brake_front * brake_torque + p.drive_front * drive_torque)
        / p.wheel_inertia,
        zero,
    )
    omega_r_dot = ops.where(
        omega_r >= 0,
        (
            -p.wheel_radius * fx_r
            + (1.0 - p.brake_front) * brake_torque
            + (1.0 - p.drive_front) * drive_torque
        )
        / p.wheel_inertia,
        zero,
    )

    # Kinematic model at the CoG, blended in below ~0.2 m/s.
    tan_steer = ops.tan(steer)
    beta_kin = ops.atan(tan_steer * p.l_r / wheelbase)
    yaw_rate_kin = v * ops.cos(beta_kin) * tan_steer / wheelbase
    ratio = tan_steer * tan_steer * p.l_r / wheelbase
    slip_dot_kin = (p.l_r * steer_rate) / (wheelbase * cos_steer * cos_steer * (1.0 + ratio * ratio))
    yaw_accel_kin = (
        accel * cos_slip * tan_steer
        - v * sin_slip * slip_dot_kin * tan_steer
        + v * cos_slip * steer_rate / (cos_steer * cos_steer)
    ) / wheelbase
    omega_f_dot_kin = (wheel_speed_f / p.wheel_radius - _positive(ops, omega_f)) / KINEMATIC_WHEEL_TIME
    omega_r_dot_kin = (wheel_speed_r / p.wheel_radius - _positive(ops, omega_r)) / KINEMATIC_WHEEL_TIME

    w = 0.5 * (ops.tanh((v - BLEND_SPEED) / BLEND_WIDTH) + 1.0)
    w_kin = 1.0 - w
    return ops.stack(
        [
            v * ops.cos(slip + yaw),
            v * ops.sin(slip + yaw),
            steer_rate,
            w * v_dot + w_kin * accel,
            w * yaw_rate + w_kin * yaw_rate_kin,
            w * yaw_accel + w_kin * yaw_accel_kin,
            w * slip_dot + w_kin * slip_dot_kin,
            w * omega_f_dot + w_kin * omega_f_dot_kin,
            w * omega_r_dot + w_kin * omega_r_dot_kin,
        ]
    )


def rolling_wheel_speeds(ops: Any, p: DriftParams, x: Any) -> tuple[Any, Any]:
    """Wheel speeds of free rolling (CommonRoad's ``init_std``): v cos(slip) cos(steer) / R_w,
    v cos(slip) / R_w."""
    v_forward = ops.field(x, State.V) * ops.cos(ops.field(x, State.SLIP))
    front = v_forward * ops.cos(ops.field(x, State.STEER)) / p.wheel_radius
    return front, v_forward / p.wheel_radius


def stable_drift_substep(wheel_speed: float, substep: float) -> float:
    """Longest RK4 substep [s] that keeps the wheel modes stable at ``wheel_speed`` [m/s]."""
    return min(substep, STABLE_DRIFT_SUBSTEP_PER_SPEED * max(wheel_speed, STIFFEST_WHEEL_SPEED))


class Drift:
    """Batched torch drift model stepped by RK4 over ``dt``; a ``Dynamics`` on 9 states.

    For tests and offline studies: ``dt`` must respect ``stable_drift_substep``.
    """

    state_dim = DRIFT_STATE_DIM
    action_dim = ACTION_DIM

    def __init__(self, params: DriftParams, dt: float):
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.params = params
        self.dt = float(dt)

    def derivative(self, state: Tensor, action: Tensor) -> Tensor:
        """x_dot (..., 9) at ``state`` (..., 9) under ``action`` (..., 2)."""
        return drift_derivative(TORCH, self.params, state, action)

    def step(self, state: Tensor, action: Tensor) -> Tensor:
        """State after holding ``action`` for ``dt`` (one RK4 step)."""
        return rk4(self.derivative, state, action, self.dt)
