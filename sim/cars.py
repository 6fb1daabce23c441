"""The simulator's true car from its command-line choices: which model, which parameters.

``--car st`` is CommonRoad's single-track model (linear tyres), ``--car std`` its drift model
(Pacejka tyres with combined slip, wheel spin and lock); both sit behind the same actuators
(lag, dead time) from the vehicle file's ``actuators:`` section. Without ``--car`` the vehicle
file's ``simulator: {car: ...}`` decides (``st`` when it names none).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from controller.track import Track
from controller.track.reference_lap import ReferenceLap, reference_lap
from vehicle_models.params import BicycleParams
from vehicle_models.true_car import CARS, TrueCar, default_car, load_true_car_config


def parse_overrides(items: Sequence[str]) -> dict[str, float]:
    """``["mu=0.8", "mass=1200"]`` -> {"mu": 0.8, "mass": 1200.0}; a clear error otherwise."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            overrides[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"true-car override {item!r}: expected PARAM=NUMBER") from None
    return overrides


def make_true_car(
    vehicle: str | Path,
    car: str | None = None,
    overrides: Sequence[str] = (),
    dead_time: float | None = None,
) -> TrueCar:
    """The true car ``car`` (one of ``CARS``; None: the vehicle file's choice)."""
    chosen = car or default_car(vehicle)
    extra = {} if dead_time is None else {"dead_time": dead_time}
    return TrueCar.from_config(
        load_true_car_config(vehicle, chosen, **(parse_overrides(overrides) | extra))
    )


def reference_lap_for(track: Track, params: BicycleParams) -> ReferenceLap:
    """The friction-limited reference lap of ``track`` with the vehicle's mu, acceleration,
    power limit (v_switch) and top speed (docs/racing.md)."""
    return reference_lap(
        track,
        mu=params.mu,
        accel_max=params.accel_max,
        v_switch=params.v_switch,
        v_max=params.speed_max,
    )


__all__ = ["CARS", "make_true_car", "parse_overrides", "reference_lap_for"]
