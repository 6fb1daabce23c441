"""Daemon configuration: one strict pydantic model, loaded from YAML with ``--set`` overrides.

Every key is validated; an unknown key or a bad value is a ``ConfigError`` that names the key's
full path (``cost.weights.lateral: ...``). ``--set a.b.c=value`` parses ``value`` as a YAML
scalar, applies it to the raw mapping, and the whole config is validated again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.costs import CostConfig
from controller.planners.mppi import MPPIConfig
from controller.planners.registry import PlannerConfig
from controller.protocol import InputLimits

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "daemon.yaml"


class ConfigError(ValueError):
    """A config problem, one line per key: ``path: reason``."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSettings(_Strict):
    bundle: str | None = Field(None, description="model bundle directory; none: kinematic only")
    model_dir: str | None = Field(
        None, description="directory of bundles; the newest is loaded at start and on reload"
    )
    watch: bool = Field(False, description="reload when a newer bundle appears in model_dir")
    dtype: Literal["float32", "float64"] = "float32"


class LogSettings(_Strict):
    enabled: bool = True
    dir: str = Field("logs", description="directory of the transition log files")
    rotate_mb: float = Field(64.0, gt=0, description="start a new file beyond this size [MiB]")
    rotate_s: float = Field(600.0, gt=0, description="start a new file after this long [s]")
    flush_s: float = Field(0.5, gt=0, description="records reach the OS at least this often [s]")


class SecuritySettings(_Strict):
    server_secret_key: str | None = Field(None, description="CURVE secret key file of the daemon")
    client_keys_dir: str | None = Field(None, description="directory of allowed client public keys")
    allow_insecure_remote: bool = Field(
        False, description="serve a non-loopback address without CURVE (trusted networks only)"
    )

    @property
    def curve(self) -> bool:
        return self.server_secret_key is not None


class DaemonConfig(_Strict):
    bind: str = Field("tcp://127.0.0.1:5555", description="ZeroMQ ROUTER endpoint")
    control_period: float = Field(0.05, gt=0, description="period of step requests [s]")
    solve_budget_fraction: float = Field(
        0.6, gt=0, le=1, description="solve budget as a fraction of the control period"
    )
    max_consecutive_fallbacks: int = Field(5, ge=0, description="then a controlled stop")
    stop_decel: float = Field(4.0, gt=0, description="braking of the controlled stop [m/s^2]")
    dead_time: float = Field(0.0, ge=0, description="input dead time to compensate [s]")
    stale_after_s: float = Field(
        1.0, gt=0, description="a step stamped this much before the newest one seen is stale [s]"
    )
    vehicle: str = Field("passenger_car", description="named parameter set or YAML path")
    track: str = Field("circle", description="built-in track name or TUM CSV path")
    planner: PlannerConfig = Field(default_factory=MPPIConfig)
    cost: CostConfig = CostConfig()
    model: ModelSettings = ModelSettings()
    log: LogSettings = LogSettings()
    limits: InputLimits = InputLimits()
    security: SecuritySettings = SecuritySettings()
    threads: int = Field(2, ge=1, description="torch threads")

    @model_validator(mode="after")
    def _planner_step_fits(self) -> "DaemonConfig":
        if self.planner.dt <= 0 or self.planner.dt > self.control_period * 20:
            raise ValueError("planner.dt must be positive and at most 20 control periods")
        return self

    @property
    def solve_budget_s(self) -> float:
        return self.solve_budget_fraction * self.control_period


def _format(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        # Discriminated unions add the tag ('mppi') to the location; users never write it.
        path = [str(p) for p in e["loc"] if p not in ("mppi", "ilqr", "mppi+ilqr")]
        where = ".".join(path) or "(top level)"
        reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{where}: {reason}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not YAML ({e})") from None
    return path, parsed


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for i, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path[: i + 1])}: is a value, cannot set {'.'.join(path)}")
        node = child
    node[path[-1]] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> DaemonConfig:
    """The config at ``path`` (the default one if None) with ``key.path=value`` overrides."""
    source = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(source.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for text in overrides:
        apply_override(raw, *parse_override(text))
    try:
        return DaemonConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}:\n{_format(e)}") from None
