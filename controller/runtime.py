"""Assembling a controller from a config: track, vehicle, model, cost, planner, core.

Kept apart from the daemon so that tests, benchmarks and the simulator's in-process mode build
exactly what the daemon runs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from controller.config import DaemonConfig
from controller.core import ControlCore, fill_unmeasured, planner_state_dim
from controller.costs import TrackCost
from controller.delay import DelayCompensator
from controller.planners.base import Planner
from controller.planners.registry import build_planner
from controller.track import Track, load_track, start_state
from vehicle_models.bundle import BundleError, ModelBundle, load_bundle
from vehicle_models.layout import KINEMATIC_STATE_DIM
from vehicle_models.params import BicycleParams, load_params
from vehicle_models.single_track import load_single_track_params

log = logging.getLogger(__name__)
KINEMATIC_VERSION = "kinematic"
#: The version of the vehicle file's single-track model (``model.nominal: single_track``).
SINGLE_TRACK_VERSION = "single_track"


@dataclass
class LoadedModel:
    version: str
    params: BicycleParams
    bundle: ModelBundle | None
    source: Path | None


def newest_bundle(model_dir: str | Path) -> Path | None:
    """The most recently written bundle directory (one holding manifest.json), if any; a link
    that leads out of ``model_dir`` is no candidate (the daemon loads only bundles under it)."""
    root = Path(model_dir).resolve()
    candidates = [p.parent for p in Path(model_dir).glob("*/manifest.json") if p.resolve().is_relative_to(root)]
    return max(candidates, key=lambda p: (p / "manifest.json").stat().st_mtime, default=None)


def single_track_bundle(vehicle: str, version: str = SINGLE_TRACK_VERSION) -> ModelBundle:
    """The vehicle file's single-track model (its dynamic: section) as a bundle without a residual."""
    return ModelBundle(version, load_params(vehicle), nominal="single_track",
                       single_track=load_single_track_params(vehicle))


def load_model(config: DaemonConfig, path: str | Path | None = None) -> LoadedModel:
    """The bundle at ``path``, else the configured one, else the newest in model_dir, else
    the configured vehicle's nominal model (``model.nominal``)."""
    source = path or config.model.bundle
    if source is None and config.model.model_dir:
        source = newest_bundle(config.model.model_dir)
    if source is None and config.model.nominal == "single_track":
        prior = single_track_bundle(config.vehicle)
        return LoadedModel(SINGLE_TRACK_VERSION, prior.params, prior, None)
    if source is None:
        return LoadedModel(KINEMATIC_VERSION, load_params(config.vehicle), None, None)
    bundle = load_bundle(source)
    return LoadedModel(bundle.version, bundle.params, bundle, Path(source))


def dead_time_of(config: DaemonConfig, model: LoadedModel) -> float:
    """The input dead time to compensate: the configured one, or the one the model's fit
    identified (``fit_metrics.dead_time_s``), whichever is longer."""
    fitted = model.bundle.fit_metrics.get("dead_time_s", 0.0) if model.bundle is not None else 0.0
    try:
        fitted = float(fitted)
    except (TypeError, ValueError):
        fitted = 0.0
    return max(config.dead_time, fitted if fitted > 0 else 0.0)


def delay_compensator_for(config: DaemonConfig, model: LoadedModel) -> DelayCompensator | None:
    """Prediction through the actions in flight, with the model's own kinematic parameters."""
    dead_time = dead_time_of(config, model)
    if dead_time <= 0:
        return None
    if model.bundle is not None and model.bundle.state_dim != KINEMATIC_STATE_DIM:
        # A dynamic-state model predicts through the actions in flight itself (float64): the
        # kinematic bicycle would leave yaw_rate and slip where they were.
        stepper = model.bundle.build(config.control_period, dtype=torch.float64)
        return DelayCompensator(stepper, dead_time, config.control_period)
    from vehicle_models.kinematic import KinematicBicycle

    return DelayCompensator(KinematicBicycle(model.params, config.control_period), dead_time, config.control_period)


def build_planner_for(
    config: DaemonConfig, model: LoadedModel, track: Track
) -> tuple[Planner, object]:
    dtype = torch.float32 if config.model.dtype == "float32" else torch.float64
    dt = config.planner.dt
    if model.bundle is not None:
        dynamics = model.bundle.build(dt, dtype=dtype)
    else:
        from vehicle_models.kinematic import KinematicBicycle

        dynamics = KinematicBicycle(model.params, dt)
    cost = TrackCost(config.cost, track, model.params, dtype)
    return build_planner(config.planner, dynamics, cost, model.params, dtype), dynamics


#: Warm-up starts no faster than this [m/s]: a slow start is in every track's envelope.
WARM_UP_SPEED_CAP = 5.0


def warm_up_speed(config: DaemonConfig) -> float:
    return min(config.cost.target_speed, WARM_UP_SPEED_CAP)


def warm_up(planner: Planner, track: Track, speed: float) -> float:
    """Run the planner twice from a start state (compiles on the first call); seconds taken."""
    started = time.perf_counter()
    x = start_state(track, speed, state_dim=planner_state_dim(planner, KINEMATIC_STATE_DIM))
    result = planner.plan(x)
    planner.prepare()
    result = planner.plan(x, result.actions, result.actions[0])
    planner.prepare()
    if not bool(torch.isfinite(result.actions).all()):
        raise BundleError("the planner returns non-finite actions on a start state")
    return time.perf_counter() - started


def check_model(dynamics: object, states: np.ndarray, params: BicycleParams | None = None) -> None:
    """Finite next states on recent states (a reloaded model must not emit NaN); a dynamic-state
    model gets the kinematic yaw rate and slip where the car sent none (``fill_unmeasured``)."""
    state_dim = int(getattr(dynamics, "state_dim", KINEMATIC_STATE_DIM))
    recent = np.array(states[:, :state_dim], dtype=np.float64)
    if params is not None:
        for row in recent:
            fill_unmeasured(row, params)
    x = torch.as_tensor(recent, dtype=torch.float32)
    u = torch.zeros(len(x), 2)
    step = getattr(dynamics, "step")
    out = step(x.to(getattr(dynamics, "dtype", torch.float32)), u)
    if not bool(torch.isfinite(out).all()):
        raise BundleError("the model predicts non-finite states on recent states")


@dataclass
class Runtime:
    config: DaemonConfig
    track: Track
    model: LoadedModel
    core: ControlCore


def set_realtime_priority(priority: int) -> None:
    """Run this process (and the threads it starts later) under SCHED_FIFO at ``priority``.

    Raises ``PermissionError`` with what to do when the process may not (CAP_SYS_NICE, or an
    rtprio limit in /etc/security/limits.conf)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as e:
        raise PermissionError(
            f"realtime_priority={priority}: this process may not use SCHED_FIFO "
            "(run as root, give python CAP_SYS_NICE, or raise the rtprio limit)"
        ) from e


@dataclass
class Assembly:
    """A model and everything built for it: what a start installs and a reload swaps in."""

    model: LoadedModel
    planner: Planner
    dynamics: object
    delay: DelayCompensator | None


def assemble(
    config: DaemonConfig,
    track: Track,
    path: str | Path | None = None,
    warm: bool = True,
    recent_states: np.ndarray | None = None,
) -> Assembly:
    """Load the model (``load_model``), build its planner, check it on ``recent_states`` if
    any, warm the planner up and build the delay compensator. Start-up and every reload run
    this one path, so a reloaded model is assembled exactly as the first one was."""
    model = load_model(config, path)
    planner, dynamics = build_planner_for(config, model, track)
    if recent_states is not None and len(recent_states):
        check_model(dynamics, recent_states, model.params)
    if warm:
        seconds = warm_up(planner, track, warm_up_speed(config))
        log.info("planner %s ready after %.1f s warm-up (backend %s)", planner.name, seconds,
                 getattr(planner, "backend", "torch"))
    return Assembly(model, planner, dynamics, delay_compensator_for(config, model))


def build_runtime(config: DaemonConfig, warm: bool = True) -> Runtime:
    if config.realtime_priority:
        # Before torch and the kernel start their thread pool, so the workers inherit it.
        set_realtime_priority(config.realtime_priority)
        log.info("running under SCHED_FIFO priority %d", config.realtime_priority)
    torch.set_num_threads(config.threads)
    track = load_track(config.track)
    built = assemble(config, track, warm=warm)
    core = ControlCore(
        built.planner,
        built.model.params,
        config.control_period,
        config.solve_budget_s,
        config.max_consecutive_fallbacks,
        config.stop_decel,
        built.delay,
        state_dim=getattr(built.dynamics, "state_dim", KINEMATIC_STATE_DIM),
        safety=config.safety,
    )
    return Runtime(config, track, built.model, core)
