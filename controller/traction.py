"""Traction-aware acceleration limits for the output guard: what the tyres can transmit.

The tyres transmit a combined acceleration of at most mu g (the friction circle). The guard
keeps a margin below it and leaves the lateral part to the steering the car already has:

    a_lat  = v^2 tan(steer) / L                      (kinematic bicycle, steady state)
    budget = margin mu g
    a_lon in [-max(sqrt(budget^2 - a_lat^2), min_brake),  min(sqrt(budget^2 - a_lat^2), a_drive(v))]

with the drive limit capped as CommonRoad caps it, a_drive(v) = accel_max v_switch / v above
v_switch (a power limit; ``BicycleParams.v_switch``), and at most ``drive_max``: a rear-wheel
drive car puts only its rear axle's grip on the road (vehicle 2: about 7 m/s^2 from rest).
Braking is capped at ``brake_max`` where set and keeps ``min_brake`` even when the lateral
demand uses the whole budget: a car too fast for its corner must still be able to slow down.

With ``axles`` (``AxleModel``) the point-mass circle gives way to a check of each axle: its
combined force sqrt(F_x^2 + F_y^2) within margin mu of its own load, with the load moved by
a h / L under braking or driving and the longitudinal force split by ``brake_front`` or
``drive_front`` (``axle_utilisation``, ``axle_limited_accel``; docs/racing.md, "Per-axle limits"). mu comes from the vehicle
(``BicycleParams.mu``), the rest from the daemon config's ``safety.traction`` (docs/config.md).
The same budget bounds the steering: the steering angle whose kinematic lateral
acceleration uses the whole budget is

    steer_limit(v) = atan(budget L / v^2)         (capped by the steering stops)

and the guard keeps the steering rate such that the wheel reaches at most that angle within
``steer_lookahead`` seconds, rate in [(-steer_limit - steer) / T, (steer_limit - steer) / T],
which turns the wheel back when it is already beyond. At 10 m/s the limit is 0.21 rad (a 12 m
radius); at 25 m/s 0.034 rad: a kinematic planner weaving on a straight at that speed asks
for 0.1 rad, three times what the tyres hold, and spins the car.
Pure functions on floats: the guard runs once per control step.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from vehicle_models.params import BicycleParams

GRAVITY = 9.81  #: [m/s^2]


class AxleModel(BaseModel):
    """Where the car's weight sits and which axle drives and brakes: the guard's per-axle limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cog_to_front: float = Field(gt=0, description="centre of gravity to the front axle, l_f [m]")
    cog_height: float = Field(ge=0, description="height of the centre of gravity, h [m]")
    drive_front: float = Field(0.0, ge=0, le=1, description="front axle's share of the drive force [-]")
    brake_front: float = Field(0.6, ge=0, le=1, description="front axle's share of the brake force [-]")


class TractionConfig(BaseModel):
    """``safety.traction``: the guard's friction limits (circle or per axle) on the commanded
    acceleration and the steering."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="apply the friction-circle limits in the guard")
    margin: float = Field(
        0.85, gt=0, le=1.5, description="fraction of mu g the combined acceleration may use [-]"
    )
    drive_max: float = Field(
        6.0, gt=0, description="largest driving acceleration the driven axle transmits [m/s^2]"
    )
    min_brake: float = Field(
        2.0, ge=0, description="braking always allowed, whatever the lateral demand [m/s^2]"
    )
    brake_max: float | None = Field(
        None, gt=0, description="largest braking before an axle locks [m/s^2] (null: the friction circle's)"
    )
    steer_lookahead: float = Field(
        0.1, gt=0, description="the steering may reach its traction limit this soon [s]"
    )
    axles: AxleModel | None = Field(
        None,
        description="per-axle limits with load transfer (null: the point-mass friction circle)",
    )


def lateral_accel(speed: float, steer: float, params: BicycleParams) -> float:
    """Steady-state lateral acceleration v^2 tan(steer) / L [m/s^2] of the kinematic bicycle."""
    return speed * speed * math.tan(steer) / params.wheelbase


def traction_accel_bounds(
    speed: float,
    steer: float,
    params: BicycleParams,
    config: TractionConfig,
    yaw_rate: float = math.nan,
) -> tuple[float, float]:
    """(lowest, highest) longitudinal acceleration [m/s^2] the tyres allow now; see above.

    With a measured ``yaw_rate`` the lateral demand is the larger of the steering's and the
    one the car shows, |v yaw_rate|: a car already turning more than its wheels say (an
    oversteering car under braking) has less left for the brakes than the kinematic bicycle
    believes."""
    lateral = abs(lateral_accel(speed, steer, params))
    if math.isfinite(yaw_rate):
        lateral = max(lateral, abs(speed * yaw_rate))
    usable_mu = config.margin * params.mu
    if config.axles is None:
        budget = usable_mu * GRAVITY
        drive = brake = math.sqrt(max(budget * budget - lateral * lateral, 0.0))
    else:
        axles, wheelbase, cap = config.axles, params.wheelbase, params.accel_max
        drive = axle_limited_accel(lateral, +1.0, axles, wheelbase, usable_mu, cap)
        brake = axle_limited_accel(lateral, -1.0, axles, wheelbase, usable_mu, cap)
    drive = min(drive, config.drive_max, params.accel_max)
    if params.v_switch is not None and speed > params.v_switch:
        drive = min(drive, params.accel_max * params.v_switch / speed)
    if config.brake_max is not None:
        brake = min(brake, config.brake_max)
    return -max(brake, config.min_brake), drive


def axle_utilisation(accel: float, lateral: float, axles: AxleModel, wheelbase: float) -> float:
    """The larger of the two axles' force demand over their load, sqrt(F_x^2 + F_y^2) / F_z,
    at longitudinal ``accel`` (signed) and ``lateral`` acceleration [m/s^2]: compare with mu.

    Quasi-static: the lateral force splits as the static load does (moment balance in a steady
    turn), the longitudinal one by the drive or brake split, and the load moves by
    accel h / L from the rear axle to the front under braking (the other way driving)."""
    l_f = axles.cog_to_front
    l_r = wheelbase - l_f
    shift = accel * axles.cog_height
    share = axles.drive_front if accel >= 0 else axles.brake_front
    worst = 0.0
    for load, lateral_share, longitudinal_share in (
        (GRAVITY * l_r - shift, l_r, share),
        (GRAVITY * l_f + shift, l_f, 1.0 - share),
    ):
        demand = math.hypot(longitudinal_share * accel * wheelbase, lateral * lateral_share)
        worst = max(worst, math.inf if load <= 0 else demand / load)
    return worst


def axle_limited_accel(
    lateral: float, direction: float, axles: AxleModel, wheelbase: float, mu: float, cap: float
) -> float:
    """Largest |a_lon| <= ``cap`` in ``direction`` (+1 driving, -1 braking) at which neither
    axle needs more than ``mu`` of its load, with ``lateral`` [m/s^2] taken first; 0 when the
    lateral demand alone uses an axle up. Bisection: the demand grows faster than the load."""
    if axle_utilisation(0.0, lateral, axles, wheelbase) > mu:
        return 0.0
    if axle_utilisation(direction * cap, lateral, axles, wheelbase) <= mu:
        return cap
    low, high = 0.0, cap
    for _ in range(24):  # cap / 2^24: well under 1e-5 m/s^2
        middle = 0.5 * (low + high)
        if axle_utilisation(direction * middle, lateral, axles, wheelbase) <= mu:
            low = middle
        else:
            high = middle
    return low


def steer_limit(speed: float, params: BicycleParams, config: TractionConfig) -> float:
    """Largest |steer| [rad] whose kinematic lateral acceleration fits the budget."""
    budget = config.margin * params.mu * GRAVITY
    if speed * speed <= 1e-9:
        return max(params.steer_max, -params.steer_min)
    return min(math.atan(budget * params.wheelbase / (speed * speed)), max(params.steer_max, -params.steer_min))


def traction_steer_rate_bounds(
    speed: float, steer: float, params: BicycleParams, config: TractionConfig
) -> tuple[float, float]:
    """(lowest, highest) steering rate [rad/s] that keeps |steer| within ``steer_limit``
    ``steer_lookahead`` seconds from now (negative highest: turn back, already beyond)."""
    limit = steer_limit(speed, params, config)
    return (-limit - steer) / config.steer_lookahead, (limit - steer) / config.steer_lookahead
