"""configs/race.yaml is a valid daemon config that keeps the safety layer on."""

from __future__ import annotations

from controller.config import DEFAULT_CONFIG, load_config

RACE = DEFAULT_CONFIG.parent / "race.yaml"


def test_race_preset_loads_and_keeps_the_guard_and_the_recovery() -> None:
    config = load_config(RACE)
    assert config.cost.target_speed > load_config(DEFAULT_CONFIG).cost.target_speed
    assert config.safety.traction.enabled and config.safety.recovery.enabled
    assert config.cost.max_lateral_accel < config.safety.traction.margin * 9.81  # inside the guard's budget


def test_race_preset_asks_no_more_than_its_guard_lets_through() -> None:
    """The speed reference brakes and drives within the per-axle guard's straight-line limits,
    so the plan's braking points are ones the guard will not cut."""
    from controller.traction import traction_accel_bounds
    from vehicle_models import load_params

    config = load_config(RACE)
    traction, cost = config.safety.traction, config.cost
    assert traction.axles is not None and cost.speed_reference == "reference_lap"
    params = load_params(config.vehicle)
    for speed in (5.0, 15.0, 25.0):
        lowest, highest = traction_accel_bounds(speed, 0.0, params, traction)
        assert cost.brake_max is not None and cost.brake_max <= -lowest
    assert cost.drive_max is not None and cost.drive_max <= traction.drive_max


def test_the_race_preset_races_the_vehicle_files_single_track_model_natively() -> None:
    """No bundle, ``model.nominal: single_track`` (the preset's): the daemon plans on the vehicle
    file's single-track model (its dynamic: section, 7 fields) on the native kernel."""
    from controller.runtime import SINGLE_TRACK_VERSION, build_planner_for, load_model
    from controller.track import load_track
    from vehicle_models.single_track import load_single_track_params

    config = load_config(RACE, ["track=circle"])
    model = load_model(config)
    assert model.version == SINGLE_TRACK_VERSION and model.bundle is not None
    assert model.bundle.nominal == "single_track" and model.bundle.state_dim == 7
    assert model.bundle.single_track == load_single_track_params(config.vehicle)
    planner, dynamics = build_planner_for(config, model, load_track("circle"))
    assert type(dynamics).__name__ == "SingleTrackNominal" and planner.backend == "native"
    assert config.cost.line == "min_curvature"
    assert load_model(load_config(DEFAULT_CONFIG)).bundle is None  # the daemon's default stays kinematic
