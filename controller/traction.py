"""Traction-aware acceleration limits for the output guard: what the tyres can transmit.

The tyres transmit a combined acceleration of at most mu g (the friction circle). The guard
keeps a margin below it and leaves the lateral part to the steering the car already has:

    a_lat  = v^2 tan(steer) / L                      (kinematic bicycle, steady state)
    budget = margin mu g
    a_lon in [-max(sqrt(budget^2 - a_lat^2), min_brake),  min(sqrt(budget^2 - a_lat^2), a_drive(v))]

with the drive limit capped as CommonRoad caps it, a_drive(v) = accel_max v_switch / v above
v_switch (a power limit; ``BicycleParams.v_switch``), and at most ``drive_max``: a rear-wheel
drive car puts only its rear axle's grip on the road (vehicle 2: about 7 m/s^2 from rest).
Braking keeps ``min_brake`` even when the lateral demand uses the whole budget: a car too fast
for its corner must still be able to slow down. mu comes from the vehicle
(``BicycleParams.mu``), the rest from the daemon config's ``safety.traction`` (docs/config.md).
Pure functions on floats: the guard runs once per control step.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from vehicle_models.params import BicycleParams

GRAVITY = 9.81  #: [m/s^2]


class TractionConfig(BaseModel):
    """``safety.traction``: the guard's friction-circle limit on the commanded acceleration."""

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


def lateral_accel(speed: float, steer: float, params: BicycleParams) -> float:
    """Steady-state lateral acceleration v^2 tan(steer) / L [m/s^2] of the kinematic bicycle."""
    return speed * speed * math.tan(steer) / params.wheelbase


def traction_accel_bounds(
    speed: float, steer: float, params: BicycleParams, config: TractionConfig
) -> tuple[float, float]:
    """(lowest, highest) longitudinal acceleration [m/s^2] the tyres allow now; see above."""
    budget = config.margin * params.mu * GRAVITY
    lateral = lateral_accel(speed, steer, params)
    longitudinal = math.sqrt(max(budget * budget - lateral * lateral, 0.0))
    drive = min(longitudinal, config.drive_max, params.accel_max)
    if params.v_switch is not None and speed > params.v_switch:
        drive = min(drive, params.accel_max * params.v_switch / speed)
    return -max(longitudinal, config.min_brake), drive
