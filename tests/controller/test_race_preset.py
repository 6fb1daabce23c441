"""configs/race.yaml is a valid daemon config that keeps the safety layer on."""

from __future__ import annotations

from controller.config import DEFAULT_CONFIG, load_config

RACE = DEFAULT_CONFIG.parent / "race.yaml"


def test_race_preset_loads_and_keeps_the_guard_and_the_recovery() -> None:
    config = load_config(RACE)
    assert config.cost.target_speed > load_config(DEFAULT_CONFIG).cost.target_speed
    assert config.safety.traction.enabled and config.safety.recovery.enabled
    assert config.cost.max_lateral_accel < config.safety.traction.margin * 9.81  # inside the guard's budget
