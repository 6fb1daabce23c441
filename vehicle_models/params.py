"""Kinematic-bicycle parameters: typed, frozen, with units; named sets live in configs/vehicles/."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_ROOT = Path(str(resources.files("configs")))  # package data: a checkout and a wheel alike
VEHICLE_DIR = CONFIG_ROOT / "vehicles"


class BicycleParams(BaseModel):
    """Parameters of the kinematic bicycle (the controller's parametric model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wheelbase: float = Field(gt=0, description="distance between front and rear axle [m]")
    ref_to_rear: float = Field(
        0.0, ge=0, description="distance from the rear axle to the reference point [m]"
    )
    steer_gain: float = Field(
        1.0, gt=0, description="effective wheel angle per unit of measured steering angle [-]"
    )
    steer_offset: float = Field(0.0, description="effective wheel angle at zero steering [rad]")
    width: float = Field(1.8, gt=0, description="vehicle width, used by the track-boundary cost [m]")
    steer_min: float = Field(-0.91, description="lower steering-angle limit [rad]")
    steer_max: float = Field(0.91, description="upper steering-angle limit [rad]")
    steer_rate_min: float = Field(-0.4, description="lower steering-rate limit [rad/s]")
    steer_rate_max: float = Field(0.4, description="upper steering-rate limit [rad/s]")
    accel_min: float = Field(-9.0, description="strongest deceleration (negative) [m/s^2]")
    accel_max: float = Field(4.0, description="strongest acceleration [m/s^2]")
    speed_min: float = Field(0.0, description="lowest speed [m/s]")
    speed_max: float = Field(50.0, description="highest speed [m/s]")
    mu: float = Field(
        1.0, gt=0, description="tyre-road friction the controller assumes (traction limits, reference lap) [-]"
    )
    v_switch: float | None = Field(
        None, gt=0,
        description="above it the drive limit is accel_max v_switch / v (CommonRoad's power limit) [m/s]; null: none",
    )

    @model_validator(mode="after")
    def _check_limits(self) -> "BicycleParams":
        for lo, hi in (
            ("steer_min", "steer_max"),
            ("steer_rate_min", "steer_rate_max"),
            ("accel_min", "accel_max"),
            ("speed_min", "speed_max"),
        ):
            if not getattr(self, lo) < getattr(self, hi):
                raise ValueError(f"{lo} must be below {hi}")
        if self.ref_to_rear > self.wheelbase:
            raise ValueError("ref_to_rear must lie between the axles (<= wheelbase)")
        return self

    @property
    def action_low(self) -> tuple[float, float]:
        return (self.steer_rate_min, self.accel_min)

    @property
    def action_high(self) -> tuple[float, float]:
        return (self.steer_rate_max, self.accel_max)


def named_vehicles() -> list[str]:
    return sorted(p.stem for p in VEHICLE_DIR.glob("*.yaml"))


def load_params(name_or_path: str | Path, **overrides: float) -> BicycleParams:
    """Load a named parameter set (``passenger_car``, ``f1tenth``) or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = VEHICLE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise FileNotFoundError(
                f"unknown vehicle {name_or_path!r}; named sets: {', '.join(named_vehicles())}"
            )
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of parameters")
    return BicycleParams(**(data.get("kinematic", data) | overrides))
