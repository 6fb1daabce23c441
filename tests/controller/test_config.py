"""Daemon config: defaults, overrides, and errors that name the key's full path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from controller.config import DEFAULT_CONFIG, ConfigError, DaemonConfig, load_config, parse_override


def problems(overrides: list[str], path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return str(e.value)


def test_default_file_is_valid_and_equals_the_model_defaults(tmp_path, monkeypatch) -> None:
    assert load_config(DEFAULT_CONFIG) == DaemonConfig()
    monkeypatch.chdir(tmp_path)  # found as package data, not relative to the working directory
    assert load_config().model_dump() == DaemonConfig().model_dump()


def test_default_file_lists_every_key() -> None:
    """configs/daemon.yaml documents the whole config: each key of each model appears."""

    def keys(model: BaseModel, prefix: str = "") -> set[str]:
        out = set()
        for name in type(model).model_fields:
            value = getattr(model, name)
            out.add(prefix + name)
            if isinstance(value, BaseModel) and name != "planner":  # planner: one kind shown
                out |= keys(value, f"{prefix}{name}.")
        return out

    def written(raw: dict, prefix: str = "") -> set[str]:
        out = set()
        for name, value in raw.items():
            out.add(prefix + name)
            if isinstance(value, dict):
                out |= written(value, f"{prefix}{name}.")
        return out

    missing = keys(DaemonConfig()) - written(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    assert not missing


def test_defaults() -> None:
    config = DaemonConfig()
    assert config.bind == "tcp://127.0.0.1:5555" and config.control_period == 0.05
    assert config.solve_budget_s == pytest.approx(0.03) and config.max_consecutive_fallbacks == 5
    assert (
        config.planner.kind == "mppi"
        and config.vehicle == "passenger_car"
        and config.track == "circle"
    )
    assert (config.log.dir, config.log.rotate_mb, config.log.rotate_s, config.log.flush_s) == (
        "~/.local/state/vehicle-mpc/logs",
        64,
        600,
        0.5,
    )
    assert config.limits.max_message_bytes == 65536 and config.dead_time == 0.0
    assert not config.security.curve and not config.security.allow_insecure_remote


def test_every_model_is_frozen_and_strict() -> None:
    def walk(model: BaseModel, where: str) -> None:
        assert model.model_config.get("frozen"), f"{where} is not frozen"
        assert model.model_config.get("extra") == "forbid", f"{where} accepts unknown keys"
        for name in type(model).model_fields:
            if isinstance(value := getattr(model, name), BaseModel):
                walk(value, f"{where}.{name}")

    config = load_config(overrides=["planner={kind: mppi+ilqr}"])
    walk(config, "config")
    with pytest.raises(ValidationError):
        config.control_period = 0.1  # type: ignore[misc]


def test_overrides_are_parsed_as_yaml_and_revalidated() -> None:
    config = load_config(
        overrides=[
            "cost.target_speed=12.5",
            "planner.num_samples=256",
            "log.enabled=false",
            "model.bundle=/m/b 1",
        ]
    )
    assert config.cost.target_speed == 12.5 and config.model.bundle == "/m/b 1"
    assert config.planner.num_samples == 256 and not config.log.enabled
    ilqr = load_config(overrides=["planner={kind: ilqr, horizon: 20}"])
    assert ilqr.planner.kind == "ilqr" and ilqr.planner.horizon == 20
    assert (
        load_config(
            overrides=["security.server_secret_key=", "security.client_keys_dir="]
        ).security.curve
        is False
    )
    assert (
        load_config(overrides=["control_period=0.1", "control_period=0.02"]).control_period == 0.02
    )  # last wins


def test_parse_override() -> None:
    assert parse_override("a.b.c= 3") == (["a", "b", "c"], 3)
    assert parse_override("bind=tcp://*:5555") == (["bind"], "tcp://*:5555")
    assert parse_override("x=") == (["x"], None)
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "cost.wieghts.lateral=3",
            "cost.wieghts.lateral: unknown key (did you mean cost.weights?)",
        ),
        (
            "cost.weights.lateal=3",
            "cost.weights.lateal: unknown key (did you mean cost.weights.lateral?)",
        ),
        ("control_perod=0.1", "control_perod: unknown key (did you mean control_period?)"),
        (
            "planner.num_samples=-4",
            "planner.num_samples: Input should be greater than or equal to 2 (got -4)",
        ),
        ("control_period=fast", "control_period: Input should be a valid number"),
        ("log.rotate_mb=[1]", "log.rotate_mb: Input should be a valid number"),
        ("limits.max_abs_speed_mps=0", "limits.max_abs_speed_mps: Input should be greater than 0"),
        ("planner={kind: rrt}", "planner.kind: unknown kind 'rrt' (one of mppi, ilqr, mppi+ilqr)"),
        ("planner={horizon: 3}", "planner.kind: required"),
        (
            "planner={kind: mppi+ilqr, mppi: {num_sample: 3}}",
            "planner.mppi.num_sample: unknown key",
        ),
        ("planner={kind: mppi+ilqr, ilqr: {horizon: 2.5}}", "planner.ilqr.horizon: "),
        ("planner.dt=5", "planner.dt: must be positive and at most 20 control periods"),
        (
            "security.server_secret_key=k",
            "security: server_secret_key and client_keys_dir go together",
        ),
        ("nonsense", "expected key.path=value"),
        ("a..b=1", "dotted path"),
        ("bind.port=3", "bind: is a value"),
        ("x=[unclosed", "value is not YAML"),
    ],
)
def test_errors_name_the_key(override: str, message: str) -> None:
    text = problems([override])
    assert message in text
    assert "errors.pydantic.dev" not in text and "type=" not in text and "Traceback" not in text


def test_every_problem_is_listed_one_per_line() -> None:
    text = problems(
        ["control_period=-1", "log.dri=x", "cost.weights={lateral: x, nope: {a: 1, b: 2}}"]
    )
    lines = text.splitlines()[1:]
    assert "control_period: Input should be greater than 0 (got -1)" in lines
    assert "log.dri: unknown key (did you mean log.dir?)" in lines
    assert (
        "cost.weights.nope.a: unknown key" in lines and "cost.weights.nope.b: unknown key" in lines
    )
    assert any(line.startswith("cost.weights.lateral: ") for line in lines)


def test_unknown_keys_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "bind: tcp://127.0.0.1:6000\ncontrol_perod: 0.1\nlog: {dir: x, rotate: {mb: 3}}\n"
    )
    text = problems([], path)
    assert text.startswith(f"{path}:")
    assert "control_perod: unknown key" in text and "log.rotate.mb: unknown key" in text


def test_missing_and_broken_files(tmp_path: Path) -> None:
    assert "no such config file" in problems([], tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("planner: [unclosed\n")
    assert "not valid YAML" in problems([], bad)
    bad.write_text("- a list\n")
    assert "expected a mapping" in problems([], bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert load_config(empty) == DaemonConfig()
