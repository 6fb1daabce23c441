"""Daemon config: defaults, overrides, and errors that name the key's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import DEFAULT_CONFIG, ConfigError, DaemonConfig, load_config


def test_default_file_equals_model_defaults() -> None:
    assert load_config(DEFAULT_CONFIG) == DaemonConfig()


def test_overrides_are_parsed_as_yaml_and_revalidated() -> None:
    config = load_config(overrides=["cost.target_speed=12.5", "planner.num_samples=256", "log.enabled=false"])
    assert config.cost.target_speed == 12.5
    assert config.planner.num_samples == 256 and not config.log.enabled
    ilqr = load_config(overrides=["planner={kind: ilqr, horizon: 20}"])
    assert ilqr.planner.kind == "ilqr" and ilqr.planner.horizon == 20


@pytest.mark.parametrize(
    "override,message",
    [
        ("cost.wieghts.lateral=3", "cost.wieghts: unknown key"),
        ("cost.weights.lateal=3", "cost.weights.lateal: unknown key"),
        ("planner.num_samples=-4", "planner.num_samples: Input should be greater than or equal to 2"),
        ("control_period=fast", "control_period: Input should be a valid number"),
        ("planner={kind: rrt}", "planner"),
        ("nonsense", "expected key.path=value"),
        ("bind.port=3", "bind: is a value"),
    ],
)
def test_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert message in str(e.value)


def test_unknown_top_level_key_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("bind: tcp://127.0.0.1:6000\ncontrol_perod: 0.1\n")
    with pytest.raises(ConfigError, match="control_perod: unknown key"):
        load_config(path)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("planner: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
