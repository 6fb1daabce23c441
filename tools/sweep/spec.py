"""The sweep spec (YAML, validated by pydantic) and its expansion into trials.

A trial is one episode: one track x true car x planner x model x config override x seed. Its
``trial_id`` is a digest of everything that determines it, so a trial already in the results
directory is recognised on resume, whichever order or machine ran it.

    name: smoke
    config: null                    # base daemon config (default configs/daemon.yaml)
    set: [planner.num_samples=256]  # --set overrides for every trial
    tracks: [circle, random:0]      # built-in names or TUM CSV paths
    cars:
      - {name: nominal}
      - {name: low_mu, vehicle: passenger_car, params: {mu: 0.8, dead_time: 0.04},
         noise: {position_m: 0.05}}
    planners: [mppi, {kind: ilqr, horizon: 30}]   # each replaces the planner section
    models: [null]                  # bundle directories; null: the kinematic model
    grid: {cost.target_speed: [8, 10]}            # cartesian product of --set values ...
    sets: [[], [planner.temperature=0.3]]         # ... times these lists of --set values
    seeds: 3                        # or a list [0, 5, 7]
    laps: 1
    max_steps: null                 # default: three laps' time at the start speed + 30 s
    mode: inprocess                 # or daemon: a real daemon subprocess over the wire
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.config import DEFAULT_CONFIG, ConfigError, DaemonConfig, apply_override, parse_override


class SpecError(ValueError):
    """A spec that cannot be read or validated, with the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoiseSpec(_Strict):
    """Gaussian noise (standard deviations) on the state the controller is told."""

    position_m: float = Field(0.0, ge=0)
    yaw_rad: float = Field(0.0, ge=0)
    speed_mps: float = Field(0.0, ge=0)
    steer_rad: float = Field(0.0, ge=0)


class CarSpec(_Strict):
    """A true car: a named vehicle (or YAML path) with parameters overridden."""

    name: str = Field("nominal", description="label in the results")
    vehicle: str = Field("passenger_car", description="named vehicle or YAML path")
    kind: Literal["st", "std"] | None = Field(
        None, description="true-car model: st (single-track), std (drift); none: the vehicle file's"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="true-car overrides: mu, dead_time, lag, ... (see true_car.py)"
    )
    noise: NoiseSpec = NoiseSpec()


class TuneParam(_Strict):
    """One searched config key: a float/int range (``log`` for scale parameters) or choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None and not v:
            raise ValueError("choices must not be empty")
        return v


class TuneSpec(_Strict):
    trials: int = Field(20, ge=1, description="Optuna trials (each a sub-sweep of the spec)")
    seed: int = Field(0, description="seed of the TPE sampler")
    params: dict[str, TuneParam] = Field(description="config key -> search range")
    max_offtrack_s: float = Field(0.0, ge=0, description="constraint: total time off track")
    max_spins: int = Field(0, ge=0, description="constraint: total spins")


class SweepSpec(_Strict):
    name: str = "sweep"
    config: str | None = Field(None, description="base daemon config; default configs/daemon.yaml")
    set: list[str] = Field(default_factory=list, description="--set overrides for every trial")
    tracks: list[str] = Field(min_length=1)
    cars: list[CarSpec] = Field(default_factory=lambda: [CarSpec()])
    planners: list[str | dict[str, Any] | None] = Field(
        default_factory=lambda: [None], description="planner kinds or sections; none: the config's"
    )
    models: list[str | None] = Field(default_factory=lambda: [None])
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    sets: list[list[str]] = Field(default_factory=lambda: [[]])
    seeds: int | list[int] = 1
    laps: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    max_offtrack_s: float = Field(2.0, ge=0, description="end a trial after this long off track")
    start_speed: float | None = Field(None, ge=0, description="default min(target_speed, 5)")
    mode: Literal["inprocess", "daemon"] = "inprocess"
    deadline: bool = Field(
        False, description="keep the solve budget in-process (not reproducible on a loaded machine)"
    )
    threads_per_trial: int = Field(1, ge=1, description="planner threads of each trial")
    tune: TuneSpec | None = None

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def config_variants(self) -> list[list[str]]:
        """Each config variant as a list of --set values: the grid's product times ``sets``."""
        keys = list(self.grid)
        products = itertools.product(*(self.grid[k] for k in keys)) if keys else [()]
        grid_sets = [[f"{k}={json.dumps(v)}" for k, v in zip(keys, values)] for values in products]
        return [g + s for g in grid_sets for s in self.sets]


@dataclass(frozen=True)
class Trial:
    """Everything that determines one episode (plain data: it travels to Ray workers)."""

    track: str
    car: dict[str, Any]  #: a ``CarSpec`` dump
    planner: str | dict[str, Any] | None
    model: str | None
    overrides: tuple[str, ...]  #: the variant's --set values
    seed: int
    base: tuple[str, ...]  #: the spec's --set values
    config_path: str | None
    laps: float
    max_steps: int | None
    max_offtrack_s: float
    start_speed: float | None
    mode: str
    deadline: bool
    threads: int

    @property
    def trial_id(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def planner_label(self) -> str:
        if self.planner is None:
            return "config"
        if isinstance(self.planner, str):
            return self.planner
        return str(self.planner.get("name") or self.planner.get("kind", "planner"))

    @property
    def config_label(self) -> str:
        return ",".join(self.overrides) or "base"

    def keys(self) -> dict[str, Any]:
        """The spec keys of this trial, as result columns."""
        return {
            "trial_id": self.trial_id,
            "track": self.track,
            "car": self.car["name"],
            "car_params": json.dumps(self.car["params"], sort_keys=True),
            "planner": self.planner_label,
            "model": self.model or "kinematic",
            "config": self.config_label,
            "seed": self.seed,
        }

    def raw_config(self) -> dict[str, Any]:
        """The daemon config mapping of this trial (before validation)."""
        source = Path(self.config_path) if self.config_path else DEFAULT_CONFIG
        raw = yaml.safe_load(source.read_text()) or {}
        for text in self.base:
            apply_override(raw, *parse_override(text))
        if self.planner is not None:
            section = {"kind": self.planner} if isinstance(self.planner, str) else dict(self.planner)
            section.pop("name", None)
            raw["planner"] = section
        if self.model is not None:
            raw.setdefault("model", {})["bundle"] = self.model
        for text in self.overrides:
            apply_override(raw, *parse_override(text))
        raw["track"] = self.track
        raw["threads"] = self.threads
        raw.setdefault("log", {})["enabled"] = False
        return raw

    def daemon_config(self) -> DaemonConfig:
        from controller.config import _problems

        try:
            return DaemonConfig.model_validate(self.raw_config())
        except ValidationError as e:
            raise ConfigError("trial config:\n" + "\n".join(_problems(e))) from None


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of the spec, in a fixed order."""
    trials = []
    for track, car, planner, model, overrides, seed in itertools.product(
        spec.tracks, spec.cars, spec.planners, spec.models, spec.config_variants(), spec.seed_list
    ):
        trials.append(
            Trial(
                track=track,
                car=car.model_dump(),
                planner=planner,
                model=model,
                overrides=tuple(overrides),
                seed=seed,
                base=tuple(spec.set),
                config_path=spec.config,
                laps=spec.laps,
                max_steps=spec.max_steps,
                max_offtrack_s=spec.max_offtrack_s,
                start_speed=spec.start_speed,
                mode=spec.mode,
                deadline=spec.deadline,
                threads=spec.threads_per_trial,
            )
        )
    return trials


def load_spec(path: str | Path) -> SweepSpec:
    """The spec at ``path``; relative config, track and model paths resolve against its folder."""
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise SpecError(f"{source}: no such spec file") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{source}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping at the top level")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        lines = [f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']}" for err in e.errors()]
        raise SpecError(f"{source}:\n" + "\n".join(lines)) from None
    return _resolve_paths(spec, source.parent)


def _resolve_paths(spec: SweepSpec, folder: Path) -> SweepSpec:
    def local(p: str | None) -> str | None:
        if p is None:
            return None
        candidate = folder / p
        return str(candidate.resolve()) if not Path(p).is_absolute() and candidate.exists() else p

    return spec.model_copy(
        update={
            "config": local(spec.config),
            "tracks": [local(t) or t for t in spec.tracks],
            "models": [local(m) for m in spec.models],
        }
    )
