"""Daemon configuration: one strict pydantic model, loaded from YAML with ``--set`` overrides.

Every key is validated; an unknown key or a bad value is a ``ConfigError`` listing each
problem as ``path: reason`` with the key's full path (``cost.wieghts.lateral: unknown key``).
``--set a.b.c=value`` parses ``value`` as a YAML scalar (or flow mapping), applies it to the
raw mapping, and the whole config is validated again. Each component's own config model
lives beside the component (planners, costs, protocol limits, security); this one composes
them.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.costs import CostConfig
from controller.planners.mppi import MPPIConfig
from controller.planners.registry import PlannerConfig
from controller.protocol import InputLimits
from controller.recovery import SafetyConfig
from controller.security import SecurityConfig

#: The shipped config, package data of ``configs`` (the same file in a checkout and a wheel).
DEFAULT_CONFIG = Path(str(resources.files("configs") / "daemon.yaml"))
#: Outside any checkout: a daemon started from the repository must not write into it.
DEFAULT_LOG_DIR = "~/.local/state/vehicle-mpc/logs"


class ConfigError(ValueError):
    """A config problem, one line per key: ``path: reason``."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSettings(_Strict):
    bundle: str | None = Field(None, description="model bundle directory; none: the nominal model below")
    nominal: Literal["kinematic", "single_track"] = Field(
        "kinematic",
        description="without a bundle: the vehicle file's kinematic bicycle, or its single-track model "
        "(its dynamic: section, friction-limited linear tyres; 7-field state)",
    )
    model_dir: str | None = Field(
        None, description="directory of bundles; the newest is loaded at start and on reload"
    )
    watch: bool = Field(False, description="reload when a newer bundle appears in model_dir")
    dtype: Literal["float32", "float64"] = "float32"


class LogSettings(_Strict):
    enabled: bool = True
    dir: str = Field(
        DEFAULT_LOG_DIR,
        description="directory of the transition log files; ~ and $VARS are expanded",
    )
    rotate_mb: float = Field(64.0, gt=0, description="start a new file beyond this size [MiB]")
    rotate_s: float = Field(600.0, gt=0, description="start a new file after this long [s]")
    flush_s: float = Field(0.5, gt=0, description="records reach the OS at least this often [s]")
    foxglove: bool = Field(
        True, description="also write the Foxglove 3D topics (track, car, plan); needs foxglove-sdk"
    )

    @property
    def path(self) -> Path:
        """``dir`` with ``~`` and environment variables expanded."""
        return Path(os.path.expandvars(self.dir)).expanduser()


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
        1.0, gt=0, description="a step delayed this much more than the previous one (receipt vs stamp) is stale [s]"
    )
    max_sessions: int = Field(
        1, ge=1, le=64, description="cars served at once (one session each); more get a busy error"
    )
    session_idle_s: float = Field(
        2.0, gt=0, description="a session silent this long gives its place to a new car [s]"
    )
    admin_bind: str | None = Field(
        None,
        description="ipc:// endpoint for reload and resetting another session; when set, the "
        "main endpoint refuses them (forbidden)",
    )
    vehicle: str = Field("passenger_car", description="named parameter set or YAML path")
    track: str = Field("circle", description="built-in track name or TUM CSV path")
    planner: PlannerConfig = Field(default_factory=MPPIConfig)
    cost: CostConfig = CostConfig()
    model: ModelSettings = ModelSettings()
    log: LogSettings = LogSettings()
    limits: InputLimits = InputLimits()
    security: SecurityConfig = SecurityConfig()
    safety: SafetyConfig = SafetyConfig()  # traction guard, loss-of-control recovery (docs/racing.md)
    threads: int = Field(
        2, ge=1, description="threads of the planner (native kernel and torch intra-op)"
    )
    realtime_priority: int = Field(
        0, ge=0, le=99,
        description="SCHED_FIFO priority of the daemon's threads (0: the normal scheduler)",
    )

    @model_validator(mode="after")
    def _planner_step_fits(self) -> DaemonConfig:
        if not 0 < self.planner.dt <= self.control_period * 20:
            raise ValueError("planner.dt: must be positive and at most 20 control periods")
        return self

    @model_validator(mode="after")
    def _admin_is_ipc(self) -> DaemonConfig:
        if self.admin_bind is not None and not self.admin_bind.startswith("ipc://"):
            raise ValueError("admin_bind: must be an ipc:// endpoint (protected by file permissions)")
        return self

    @property
    def solve_budget_s(self) -> float:
        return self.solve_budget_fraction * self.control_period


# -- readable errors --------------------------------------------------------------------------
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation can hold (through Optional, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _resolve(loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """The user's key path of a pydantic error location, and the model holding its last key.

    Discriminated unions (``planner``) put the tag (``mppi``) into the location; users never
    write it, so it is dropped here, and only where a union puts it: ``planner.mppi`` of the
    combined planner is a real key.
    """
    path: list[str] = []
    model: type[BaseModel] | None = DaemonConfig
    parent: type[BaseModel] | None = DaemonConfig
    union: list[type[BaseModel]] | None = None
    for part in loc:
        if union is not None:  # this part is the tag of a discriminated union
            model = next((m for m in union if m.model_fields["kind"].default == part), None)
            union = None
            continue
        path.append(str(part))
        parent, field = model, (model.model_fields.get(str(part)) if model is not None else None)
        members = _models_in(field.annotation) if field is not None else []
        if field is not None and field.discriminator and len(members) > 1:
            union, model = members, None
        else:
            model = members[0] if len(members) == 1 else None
    return path, parent


def _leaves(value: Any, prefix: list[str], limit: int = 5) -> list[list[str]]:
    """Key paths down to the leaves of a nested mapping (at most ``limit``)."""
    if not isinstance(value, dict) or not value:
        return [prefix]
    out: list[list[str]] = []
    for key, child in value.items():
        out.extend(_leaves(child, [*prefix, str(key)], limit - len(out)))
        if len(out) >= limit:
            break
    return out[:limit]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _problems(error: ValidationError) -> list[str]:
    lines = []
    for e in error.errors(include_url=False):
        path, parent = _resolve(tuple(e["loc"]))
        where = ".".join(path)
        kind = e["type"]
        if kind == "extra_forbidden":
            # Name every leaf the user wrote under the unknown key, and suggest the known one.
            hint = ""
            if parent is not None and path:
                close = difflib.get_close_matches(path[-1], list(parent.model_fields), n=1)
                hint = f" (did you mean {'.'.join([*path[:-1], close[0]])}?)" if close else ""
            lines += [f"{'.'.join(leaf)}: unknown key{hint}" for leaf in _leaves(e["input"], path)]
        elif kind == "missing":
            lines.append(f"{where}: required")
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            field = parent.model_fields.get(path[-1]) if parent is not None and path else None
            members = _models_in(field.annotation) if field is not None else []
            tags = [str(m.model_fields["kind"].default) for m in members]
            tag = e.get("ctx", {}).get("tag")
            got = f"unknown kind {tag!r}" if kind == "union_tag_invalid" else "required"
            lines.append(f"{where}.kind: {got} (one of {', '.join(tags)})")
        elif kind == "value_error":
            message = str(e["msg"]).removeprefix("Value error, ")
            # Model validators name their own keys ("planner.dt: ..."); field ones do not.
            lines.append(message if not where else f"{where}: {message}")
        else:
            got = "" if isinstance(e["input"], (dict, list)) else f" (got {_short(e['input'])})"
            lines.append(f"{where or '(top level)'}: {e['msg']}{got}")
    return lines


# -- loading ------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` as (["a", "b", "c"], value parsed as YAML); an empty value is null."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in path):
        raise ConfigError(f"--set {text!r}: key must be a dotted path such as cost.target_speed")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not YAML ({e})") from None
    return path, parsed


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``raw[path[0]][path[1]]... = value`` in place, creating missing mappings."""
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
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for text in overrides:
        apply_override(raw, *parse_override(text))
    try:
        return DaemonConfig.model_validate(raw)
    except ValidationError as e:
        where = f"{source}" + (" with --set overrides" if overrides else "")
        raise ConfigError(f"{where}:\n" + "\n".join(_problems(e))) from None
