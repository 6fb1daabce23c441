"""One simulated episode: a plant drives around a track under a controller's actions.

The controller is any ``Controller``: a daemon reached over the wire (``sim.remote``) or a
planner in-process. The episode ends on lap completion, after the car has been off the track
longer than ``max_offtrack_s``, or at the step limit; ``Summary`` is what gets printed and
written as JSON.

Real-time mode paces requests at the control rate by the wall clock; a reply that arrives
after the period has ended is too late: the previous action is held for that period and the
late reply is counted (``late_replies``). Lockstep mode waits for every reply and runs as fast
as the controller answers (deterministic).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from controller.track import Track
from vehicle_models.layout import State

FIELD_NAMES = ("x", "y", "steer", "v", "yaw", "yaw_rate", "slip")


@dataclass(frozen=True)
class Reply:
    """What a controller answered for one step."""

    action: np.ndarray | None  #: (2,) or None when there was no usable answer
    status: str  #: "ok", "fallback", "stop", "error", "timeout"; "interrupted", "exited" end the episode
    round_trip_ms: float
    solve_ms: float = 0.0


class Controller(Protocol):
    def reset(self) -> None: ...

    def step(self, seq: int, stamp: float, state: dict[str, float], timeout_s: float) -> Reply: ...


class Plant(Protocol):
    """The simulated car: ``reset(state)``, ``step(action, period) -> state (7,)``."""

    def reset(self, state: np.ndarray) -> None: ...

    def step(self, action: np.ndarray, period: float) -> np.ndarray: ...


@dataclass
class SensorNoise:
    """Gaussian measurement noise (standard deviations) on what the controller is told."""

    position_m: float = 0.0
    yaw_rad: float = 0.0
    speed_mps: float = 0.0
    steer_rad: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def measure(self, state: np.ndarray) -> np.ndarray:
        out = state.copy()
        out[State.X] += self._rng.normal(0.0, self.position_m) if self.position_m else 0.0
        out[State.Y] += self._rng.normal(0.0, self.position_m) if self.position_m else 0.0
        out[State.YAW] += self._rng.normal(0.0, self.yaw_rad) if self.yaw_rad else 0.0
        out[State.V] += self._rng.normal(0.0, self.speed_mps) if self.speed_mps else 0.0
        out[State.STEER] += self._rng.normal(0.0, self.steer_rad) if self.steer_rad else 0.0
        return out


@dataclass
class Summary:
    track: str
    completed: bool
    #: "lap", "offtrack", "step_limit", "controller" (no answer), "diverged", "interrupted"
    #: (Ctrl-C) or "exited" (the daemon process ended)
    end_reason: str
    steps: int
    lap_time_s: float | None
    mean_abs_lateral_m: float
    max_abs_lateral_m: float
    offtrack_s: float
    mean_speed_mps: float
    round_trip_ms_p50: float
    round_trip_ms_p99: float
    solve_ms_p50: float
    fallbacks: int
    stops: int
    errors: int
    timeouts: int
    late_replies: int
    mode: str
    extra: dict[str, float] = field(default_factory=dict)
    lap_times_s: list[float] = field(default_factory=list)  #: each completed lap [s]
    reference_lap_s: float | None = None  #: friction-limited flying lap (reference_lap) [s]
    laps: float = 1.0  #: laps asked for; lap_time_s is the time they took

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    def lines(self) -> list[str]:
        lap = f"{self.lap_time_s:.2f} s" if self.lap_time_s is not None else "not completed"
        label = "lap time" if self.laps == 1 else f"time for {self.laps:g} laps"
        lines = [
            f"track {self.track}: {self.end_reason} after {self.steps} steps ({self.mode})",
            f"  {label:<20}{lap}",
        ]
        if self.reference_lap_s:
            each = ", ".join(
                f"{t:.2f} s ({t / self.reference_lap_s:.2f}x)" for t in self.lap_times_s
            ) or "none completed"
            lines.append(f"  each lap            {each} of the {self.reference_lap_s:.2f} s reference")
        return lines + [
            f"  lateral offset      mean {self.mean_abs_lateral_m:.3f} m, max {self.max_abs_lateral_m:.3f} m",
            f"  time off track      {self.offtrack_s:.2f} s",
            f"  mean speed          {self.mean_speed_mps:.2f} m/s",
            f"  round trip          p50 {self.round_trip_ms_p50:.2f} ms, p99 {self.round_trip_ms_p99:.2f} ms",
            f"  solve               p50 {self.solve_ms_p50:.2f} ms",
            f"  fallbacks {self.fallbacks}, stops {self.stops}, errors {self.errors}, "
            f"timeouts {self.timeouts}, late replies {self.late_replies}",
        ]


@dataclass
class EpisodeConfig:
    control_period: float = 0.05
    laps: float = 1.0
    max_steps: int | None = None  #: default: three times the lap at the start speed, plus 30 s
    max_offtrack_s: float = 2.0
    realtime: bool = False
    reply_timeout_s: float = 1.0
    #: lockstep: how long to keep resending a step the controller does not answer [s]
    unavailable_limit_s: float = 120.0
    vehicle_width: float = 1.674


def state_message(state: np.ndarray) -> dict[str, float]:
    """Wire fields of a state; unmeasured (NaN) optional fields are left out."""
    return {
        name: float(state[i])
        for i, name in enumerate(FIELD_NAMES)
        if i < len(state) and math.isfinite(state[i])
    }


def run_episode(
    controller: Controller,
    plant: Plant,
    track: Track,
    initial_state: np.ndarray,
    config: EpisodeConfig,
    sensor: SensorNoise | None = None,
    on_step: Callable[[int, np.ndarray, float], None] | None = None,
) -> Summary:
    """Drive one episode; ``on_step(step, state, progress_m)`` sees every period."""
    lookup = track.lookup(torch.float64)
    length = track.length
    period = config.control_period
    speed0 = max(float(initial_state[State.V]), 1.0)
    max_steps = config.max_steps or int(math.ceil((3 * config.laps * length / speed0 + 30.0) / period))

    def locate(state: np.ndarray) -> tuple[float, float, bool]:
        return lookup.locate(state[State.X], state[State.Y], state[State.YAW], config.vehicle_width)

    plant.reset(initial_state)
    controller.reset()
    state = np.asarray(initial_state, dtype=np.float64)
    held = np.zeros(2)
    s_prev, lat, off = locate(state)
    progress, lateral, speeds, offtrack = 0.0, [abs(lat)], [state[State.V]], [off]
    rtt, solve = [], []
    counts = dict(fallback=0, stop=0, error=0, timeout=0, late=0)
    lap_ends: list[float] = []
    offtrack_run = 0.0
    end_reason, lap_time = "step_limit", None
    clock = time.perf_counter()
    sim_time = 0.0
    steps = 0
    for n in range(max_steps):
        measured = sensor.measure(state) if sensor else state
        message = state_message(measured)
        reply = controller.step(n, sim_time, message, config.reply_timeout_s)
        if not config.realtime:
            # Lockstep: the simulation waits for the controller (a restarting daemon, say).
            waited = 0.0
            while reply.status == "timeout" and waited < config.unavailable_limit_s:
                counts["timeout"] += 1
                waited += config.reply_timeout_s
                reply = controller.step(n, sim_time, message, config.reply_timeout_s)
            if reply.status == "timeout":
                end_reason = "controller"
                break
        if reply.status in ("interrupted", "exited"):  # a controller that will not answer again
            end_reason = reply.status
            break
        rtt.append(reply.round_trip_ms)
        solve.append(reply.solve_ms)
        if reply.status in ("fallback", "stop", "error") or (config.realtime and reply.status == "timeout"):
            counts[reply.status] += 1
        late = config.realtime and reply.round_trip_ms > period * 1e3
        if late:
            counts["late"] += 1
        if reply.action is not None and not late:
            held = reply.action
        state = plant.step(held, period)
        sim_time += period
        steps = n + 1
        if not np.isfinite(state[:5]).all():  # yaw_rate and slip may be unmeasured (NaN)
            end_reason = "diverged"
            break
        if config.realtime:
            clock += period
            now = time.perf_counter()
            if clock < now - period:  # an outage (timeouts) put us behind: keep to the wall
                clock = now  # clock from here, never a catch-up burst of steps
            time.sleep(max(0.0, clock - now))
        s, lat, off = locate(state)
        progress += (s - s_prev + 0.5 * length) % length - 0.5 * length
        s_prev = s
        lateral.append(abs(lat))
        speeds.append(state[State.V])
        offtrack.append(off)
        offtrack_run = offtrack_run + period if off else 0.0
        if progress >= (len(lap_ends) + 1) * length:
            lap_ends.append(sim_time)
        if on_step is not None:
            on_step(n, state, progress)
        if progress >= config.laps * length:
            end_reason, lap_time = "lap", sim_time
            break
        if offtrack_run > config.max_offtrack_s:
            end_reason = "offtrack"
            break
    return Summary(
        track=track.name,
        completed=end_reason == "lap",
        end_reason=end_reason,
        steps=steps,
        lap_time_s=lap_time,
        mean_abs_lateral_m=float(np.mean(lateral)),
        max_abs_lateral_m=float(np.max(lateral)),
        offtrack_s=float(np.sum(offtrack) * period),
        mean_speed_mps=float(np.mean(speeds)),
        round_trip_ms_p50=float(np.percentile(rtt, 50)) if rtt else 0.0,
        round_trip_ms_p99=float(np.percentile(rtt, 99)) if rtt else 0.0,
        solve_ms_p50=float(np.percentile(solve, 50)) if solve else 0.0,
        fallbacks=counts["fallback"],
        stops=counts["stop"],
        errors=counts["error"],
        timeouts=counts["timeout"],
        late_replies=counts["late"],
        mode="real-time" if config.realtime else "lockstep",
        lap_times_s=np.diff([0.0, *lap_ends]).tolist(),
        laps=config.laps,
    )
