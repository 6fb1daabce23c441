"""In-process closed loop: the daemon's control step drives a simulated car around a track.

The one closed-loop driver of the project. Every in-process episode (tests, benchmarks, the
sweeps of ``tools.sweep``) goes through ``run_closed_loop``: each control period the car's
state goes to ``ControlCore.step`` (the daemon's own step: delay prediction, warm start,
fallbacks, output guard) at the simulated time, the guarded action goes to the car, and
``after_reply`` does the between-request work, exactly as the daemon orders it. No sockets;
the wire episode is ``sim.episode.run_episode``.

``run_config_episode`` is the whole trial: a daemon config, a track, a true car and a seed in,
per-step arrays and a summary out. By default it runs without the solve deadline (lockstep:
a planner never cuts its iterations short because the machine is busy), so the same inputs
give the same numbers in any process, serially or on a cluster.

The car is any ``Plant`` (``reset(state)``, ``step(action, period) -> state``): the
simulator's ``TrueCar`` or ``FunctionPlant`` around a model's ``step``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor

from controller.config import DaemonConfig
from controller.core import FALLBACK, OK, STOP, ControlCore
from controller.planners.base import Planner
from controller.track import Track, start_state  # noqa: F401  (start_state: re-exported)
from vehicle_models.layout import DYNAMIC_STATE_DIM, State
from vehicle_models.params import BicycleParams

#: Status codes of the per-step ``status`` array.
STATUS_CODES = {OK: 0, FALLBACK: 1, STOP: 2}
#: A spin: the car's heading more than this far from the track's direction [rad] ...
SPIN_HEADING_RAD = math.pi / 2
#: ... or its side-slip beyond this [rad] (dynamic states only), above walking speed.
SPIN_SLIP_RAD = 0.5
SPIN_MIN_SPEED = 2.0  #: [m/s]


class Plant(Protocol):
    """The simulated car: ``reset(state)``, ``step(action, period) -> state``."""

    def reset(self, state: np.ndarray) -> None: ...

    def step(self, action: np.ndarray, period: float) -> np.ndarray: ...


class FunctionPlant:
    """A model's ``step(x, u) -> x_next`` over one control period as a ``Plant`` (float64)."""

    def __init__(self, step: Callable[[Tensor, Tensor], Tensor]):
        self._step = step
        self._x = torch.zeros(5, dtype=torch.float64)

    def reset(self, state: np.ndarray) -> None:
        self._x = torch.as_tensor(np.asarray(state, dtype=np.float64)).clone()

    def step(self, action: np.ndarray, period: float) -> np.ndarray:
        u = torch.as_tensor(np.asarray(action, dtype=np.float64))
        self._x = self._step(self._x, u).to(torch.float64)
        return self._x.numpy().copy()


@dataclass
class DriveLog:
    """What happened, one row per control period (per-state arrays have N + 1 rows)."""

    control_period: float
    track_length: float
    states: np.ndarray  #: (N + 1, 7) car states; NaN where the car has no such field
    actions: np.ndarray  #: (N, 2) guarded actions sent to the car
    status: np.ndarray  #: (N,) int8, ``STATUS_CODES``
    solve_ms: np.ndarray  #: (N,) time in the planner
    lateral: np.ndarray  #: (N + 1,) signed lateral offset [m]
    progress: np.ndarray  #: (N + 1,) arc length driven since the start [m]
    offtrack: np.ndarray  #: (N + 1,) some part of the car beyond an edge
    spinning: np.ndarray  #: (N + 1,) heading or slip beyond the spin thresholds
    lap_times_s: list[float]  #: time of each completed lap (not cumulative) [s]
    end_reason: str  #: "laps", "offtrack", "diverged" or "step_limit"
    laps: float = 1.0
    planner: str = ""
    deadline_misses: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.end_reason == "laps"

    @property
    def lap_time_s(self) -> float | None:
        """Time to drive the requested laps, None when they were not driven."""
        return self.steps * self.control_period if self.completed else None

    @property
    def steps(self) -> int:
        return int(len(self.actions))

    def summary(self) -> dict[str, float | int | bool | str | None]:
        abs_lat = np.abs(self.lateral)
        spin_onsets = int(np.count_nonzero(self.spinning[1:] & ~self.spinning[:-1]) + self.spinning[0])
        return {
            "completed": self.completed,
            "end_reason": self.end_reason,
            "lap_time_s": self.lap_time_s,
            "steps": self.steps,
            "progress_m": float(self.progress[-1]),
            "mean_abs_lateral_m": float(abs_lat.mean()),
            "max_abs_lateral_m": float(abs_lat.max()),
            "offtrack_s": float(self.offtrack.sum() * self.control_period),
            "spins": spin_onsets,
            "mean_speed_mps": float(self.states[:, State.V].mean()),
            "solve_ms_p50": float(np.percentile(self.solve_ms, 50)) if self.steps else 0.0,
            "solve_ms_p99": float(np.percentile(self.solve_ms, 99)) if self.steps else 0.0,
            "fallbacks": int(np.count_nonzero(self.status == STATUS_CODES[FALLBACK])),
            "stops": int(np.count_nonzero(self.status == STATUS_CODES[STOP])),
            "deadline_misses": self.deadline_misses,
        }


def make_core(
    planner: Planner,
    params: BicycleParams,
    control_period: float,
    solve_budget_s: float = math.inf,
    **options: object,
) -> ControlCore:
    """The daemon's control step around ``planner`` (``options``: ControlCore's keywords).

    The only place the simulator builds a ``ControlCore``; ``solve_budget_s=inf`` is lockstep.
    """
    return ControlCore(planner, params, control_period, solve_budget_s, **options)  # type: ignore[arg-type]


def core_for_config(config: DaemonConfig, track: Track, deadline: bool = False) -> ControlCore:
    """What ``controller.runtime.build_runtime`` assembles from ``config``, on ``track``.

    ``deadline=False`` drops the solve budget (lockstep, reproducible on a loaded machine).
    The planner is warmed up as the daemon warms it (two plans from a start state), so its
    random stream is where the daemon's is when the first request arrives.
    """
    from controller.runtime import build_planner_for, delay_compensator_for, load_model, warm_up

    model = load_model(config)
    planner, dynamics = build_planner_for(config, model, track)
    warm_up(planner, track, min(config.cost.target_speed, 5.0))
    return make_core(
        planner,
        model.params,
        config.control_period,
        config.solve_budget_s if deadline else math.inf,
        max_consecutive_fallbacks=config.max_consecutive_fallbacks,
        stop_decel=config.stop_decel,
        delay=delay_compensator_for(config, model),
        state_dim=getattr(dynamics, "state_dim", 5),
        safety=config.safety,
    )


def seeded(config: DaemonConfig, seed: int) -> DaemonConfig:
    """``config`` with every planner seed (MPPI's, or the combined planner's MPPI's) set."""
    planner = config.planner
    if hasattr(planner, "seed"):
        planner = planner.model_copy(update={"seed": seed})
    elif hasattr(planner, "mppi"):
        planner = planner.model_copy(update={"mppi": planner.mppi.model_copy(update={"seed": seed})})
    return config.model_copy(update={"planner": planner})


def run_closed_loop(
    core: ControlCore,
    plant: Plant,
    track: Track,
    initial_state: np.ndarray | Tensor,
    control_period: float,
    vehicle_width: float,
    laps: float = 1.0,
    max_steps: int | None = None,
    max_offtrack_s: float = math.inf,
    measure: Callable[[np.ndarray], np.ndarray] | None = None,
    on_step: Callable[[int, np.ndarray], None] | None = None,
) -> DriveLog:
    """Drive until ``laps`` laps, ``max_steps`` periods, a non-finite state, or more than
    ``max_offtrack_s`` seconds off the track in a row.

    ``measure`` turns the true state into what the controller is told (sensor noise).
    Default ``max_steps``: three times the laps at the start speed, plus 30 s.
    """
    x0 = np.asarray(initial_state, dtype=np.float64).reshape(-1)
    length = float(track.length)
    if max_steps is None:
        speed0 = max(float(x0[State.V]), 1.0)
        max_steps = int(math.ceil((3.0 * laps * length / speed0 + 30.0) / control_period))
    lookup = track.lookup(dtype=torch.float64)
    point = torch.zeros(1, dtype=torch.float64)

    def where(x: np.ndarray) -> tuple[float, float, bool, bool]:
        p = lookup.project(point.new_tensor([x[State.X]]), point.new_tensor([x[State.Y]]),
                           point.new_tensor([x[State.YAW]]))
        lat = float(p.lateral[0])
        room = float(p.width_left[0]) if lat > 0 else float(p.width_right[0])
        heading_error = abs(math.remainder(float(x[State.YAW]) - float(p.heading[0]), math.tau))
        slip = float(x[State.SLIP]) if len(x) > State.SLIP and math.isfinite(x[State.SLIP]) else 0.0
        spinning = float(x[State.V]) > SPIN_MIN_SPEED and (
            heading_error > SPIN_HEADING_RAD or abs(slip) > SPIN_SLIP_RAD
        )
        return float(p.s[0]), lat, abs(lat) + 0.5 * vehicle_width > room, spinning

    def padded(x: np.ndarray) -> np.ndarray:
        out = np.full(DYNAMIC_STATE_DIM, np.nan)
        out[: len(x)] = x
        return out

    plant.reset(x0)
    core.reset()
    # As on the wire: a start state without yaw_rate and slip has them unmeasured (NaN), and a
    # 7-field model's core fills them (``fill_unmeasured``); a 5-field core reads the first five.
    x = padded(x0)
    s_prev, lat, off, spin = where(x)
    states, lateral, offtrack, spinning, progress = [padded(x)], [lat], [off], [spin], [0.0]
    actions, status, solve_ms = [], [], []
    lap_times: list[float] = []
    lap_started, offtrack_run, deadline_misses = 0.0, 0.0, 0
    end_reason = "step_limit"
    for n in range(max_steps):
        stamp = n * control_period
        outcome = core.step(measure(x) if measure is not None else x, stamp)
        core.after_reply()
        action = np.asarray(outcome.action, dtype=np.float64)
        x = np.asarray(plant.step(action, control_period), dtype=np.float64).reshape(-1)
        actions.append(action)
        status.append(STATUS_CODES[outcome.status])
        solve_ms.append(outcome.solve_ms)
        deadline_misses += int(outcome.deadline_missed)
        states.append(padded(x))
        if not np.isfinite(x[:5]).all():
            lateral.append(math.nan), offtrack.append(True), spinning.append(False)
            progress.append(progress[-1])
            end_reason = "diverged"
            break
        s, lat, off, spin = where(x)
        progress.append(progress[-1] + (s - s_prev + 0.5 * length) % length - 0.5 * length)
        s_prev = s
        lateral.append(lat), offtrack.append(off), spinning.append(spin)
        if on_step is not None:
            on_step(n, x)
        now = (n + 1) * control_period
        if progress[-1] >= (len(lap_times) + 1) * length and len(lap_times) < math.ceil(laps):
            lap_times.append(now - lap_started)
            lap_started = now
        if progress[-1] >= laps * length:
            end_reason = "laps"
            break
        offtrack_run = offtrack_run + control_period if off else 0.0
        if offtrack_run > max_offtrack_s:
            end_reason = "offtrack"
            break
    return DriveLog(
        control_period=control_period,
        track_length=length,
        states=np.asarray(states),
        actions=np.asarray(actions, dtype=np.float64).reshape(-1, 2),
        status=np.asarray(status, dtype=np.int8),
        solve_ms=np.asarray(solve_ms),
        lateral=np.asarray(lateral),
        progress=np.asarray(progress),
        offtrack=np.asarray(offtrack, dtype=bool),
        spinning=np.asarray(spinning, dtype=bool),
        lap_times_s=lap_times,
        end_reason=end_reason,
        laps=laps,
        planner=getattr(core.planner, "name", ""),
        deadline_misses=deadline_misses,
    )


def run_config_episode(
    config: DaemonConfig,
    track: Track,
    car: Plant,
    seed: int = 0,
    laps: float = 1.0,
    max_steps: int | None = None,
    start_speed: float | None = None,
    max_offtrack_s: float = 2.0,
    measure: Callable[[np.ndarray], np.ndarray] | None = None,
    deadline: bool = False,
) -> DriveLog:
    """One trial: the controller ``config`` builds (seeded) drives ``car`` around ``track``.

    Starts on the centre line at ``start_speed`` (default: the daemon's warm-up speed,
    ``min(target_speed, 5)``). ``torch``'s global generator is seeded too, for any model
    that draws from it.
    """
    from vehicle_models.params import load_params

    torch.manual_seed(seed)
    core = core_for_config(seeded(config, seed), track, deadline)
    speed = min(config.cost.target_speed, 5.0) if start_speed is None else start_speed
    width = load_params(config.vehicle).width
    return run_closed_loop(
        core, car, track, start_state(track, speed).numpy(), config.control_period, width,
        laps=laps, max_steps=max_steps, max_offtrack_s=max_offtrack_s, measure=measure,
    )
