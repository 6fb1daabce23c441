"""Dynamic single-track model (CommonRoad ST), the simulator's "true car".

Reference point: the centre of gravity. State (CommonRoad order, ``State``): x, y [m],
steer [rad], v [m/s] (speed of the CoG), yaw [rad], yaw_rate [rad/s], slip [rad] (side-slip
angle at the CoG); input: steer_rate [rad/s], accel [m/s^2].

Lateral tyre forces come from ``tyres`` with load transfer by acceleration:
F_zf = m (g l_r - a h) / L, F_zr = m (g l_f + a h) / L, slip angles
alpha_f = steer - slip - l_f yaw_rate / v, alpha_r = -slip + l_r yaw_rate / v, and

    slip'     = (F_yf + F_yr) / (m v) - yaw_rate
    yaw_rate' = (l_f F_yf - l_r F_yr) / I_z

With the linear tyre this is exactly CommonRoad's ``vehicle_dynamics_st`` (tested against it),
including its input constraints (steering end stops, the acceleration limit falling with speed
above v_switch) and its switch to the kinematic model below 0.1 m/s. Scalar float64: the
simulator integrates one car with millisecond substeps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from vehicle_models.params import VEHICLE_DIR
from vehicle_models.tyres import LinearTyre, TyreModel

GRAVITY = 9.81
KINEMATIC_BELOW_MPS = 0.1


class SingleTrackParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mass: float = Field(gt=0, description="[kg]")
    yaw_inertia: float = Field(gt=0, description="I_z [kg m^2]")
    l_f: float = Field(gt=0, description="CoG to front axle [m]")
    l_r: float = Field(gt=0, description="CoG to rear axle [m]")
    cog_height: float = Field(ge=0, description="h [m]")
    mu: float = Field(gt=0, description="friction coefficient [-]")
    stiffness_front: float = Field(gt=0, description="C_Sf, cornering stiffness per load [1/rad]")
    stiffness_rear: float = Field(gt=0, description="C_Sr [1/rad]")
    steer_min: float = -1.066
    steer_max: float = 1.066
    steer_rate_min: float = -0.4
    steer_rate_max: float = 0.4
    speed_min: float = -13.9
    speed_max: float = 50.8
    v_switch: float = Field(7.319, gt=0, description="above it the accel limit is a_max v_switch / v")
    accel_max: float = Field(11.5, gt=0)
    tyre: TyreModel = LinearTyre()

    @property
    def wheelbase(self) -> float:
        return self.l_f + self.l_r


def load_single_track_params(name_or_path: str | Path, **overrides: object) -> SingleTrackParams:
    """The ``dynamic:`` section of a named vehicle (``passenger_car``) or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = VEHICLE_DIR / f"{name_or_path}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if "dynamic" not in data:
        raise ValueError(f"{path} has no 'dynamic:' section")
    return SingleTrackParams(**(data["dynamic"] | overrides))


def constrain_inputs(p: SingleTrackParams, steer: float, v: float, steer_rate: float, accel: float) -> tuple[float, float]:
    """CommonRoad's steering and acceleration constraints."""
    if (steer <= p.steer_min and steer_rate <= 0) or (steer >= p.steer_max and steer_rate >= 0):
        steer_rate = 0.0
    else:
        steer_rate = min(max(steer_rate, p.steer_rate_min), p.steer_rate_max)
    pos_limit = p.accel_max * p.v_switch / v if v > p.v_switch else p.accel_max
    if (v <= p.speed_min and accel <= 0) or (v >= p.speed_max and accel >= 0):
        accel = 0.0
    else:
        accel = min(max(accel, -p.accel_max), pos_limit)
    return steer_rate, accel


def derivative(p: SingleTrackParams, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """dx/dt (7,) at state x (7,) under input u (2,)."""
    _, _, steer, v, yaw, yaw_rate, slip = (float(c) for c in x)
    steer_rate, accel = constrain_inputs(p, steer, v, float(u[0]), float(u[1]))
    L = p.wheelbase
    if abs(v) < KINEMATIC_BELOW_MPS:
        # Kinematic model at the CoG, with yaw rate and slip following it (CommonRoad's switch).
        # CommonRoad constrains the inputs once more inside its kinematic model; same result.
        steer_rate, accel = constrain_inputs(p, steer, v, steer_rate, accel)
        beta = math.atan(math.tan(steer) * p.l_r / L)
        d_beta = (p.l_r * steer_rate) / (
            L * math.cos(steer) ** 2 * (1 + (math.tan(steer) ** 2 * p.l_r / L) ** 2)
        )
        dd_psi = (
            accel * math.cos(slip) * math.tan(steer)
            - v * math.sin(slip) * d_beta * math.tan(steer)
            + v * math.cos(slip) * steer_rate / math.cos(steer) ** 2
        ) / L
        return np.array([
            v * math.cos(beta + yaw),
            v * math.sin(beta + yaw),
            steer_rate,
            accel,
            v * math.cos(beta) * math.tan(steer) / L,
            dd_psi,
            d_beta,
        ])
    load_f = p.mass * (GRAVITY * p.l_r - accel * p.cog_height) / L
    load_r = p.mass * (GRAVITY * p.l_f + accel * p.cog_height) / L
    alpha_f = steer - slip - p.l_f * yaw_rate / v
    alpha_r = -slip + p.l_r * yaw_rate / v
    f_yf = load_f * p.tyre.force_per_load(alpha_f, p.mu, p.stiffness_front)
    f_yr = load_r * p.tyre.force_per_load(alpha_r, p.mu, p.stiffness_rear)
    return np.array([
        v * math.cos(slip + yaw),
        v * math.sin(slip + yaw),
        steer_rate,
        accel,
        yaw_rate,
        (p.l_f * f_yf - p.l_r * f_yr) / p.yaw_inertia,
        (f_yf + f_yr) / (p.mass * v) - yaw_rate,
    ])


def rk4_step(p: SingleTrackParams, x: np.ndarray, u: np.ndarray, h: float) -> np.ndarray:
    k1 = derivative(p, x, u)
    k2 = derivative(p, x + 0.5 * h * k1, u)
    k3 = derivative(p, x + 0.5 * h * k2, u)
    k4 = derivative(p, x + h * k3, u)
    return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
