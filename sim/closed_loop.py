"""In-process closed loop: a planner drives a plant around a track, one control period at a time.

No sockets: this is the batch mode used by tests, benchmarks and quick experiments. The plant
is any function ``(state, action) -> next state`` over one control period (the kinematic
model itself, or the simulator's true car).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from controller.planners.base import Planner, shift_plan
from controller.track import Track, start_state  # noqa: F401  (start_state: re-exported)
from vehicle_models.layout import State

Plant = Callable[[Tensor, Tensor], Tensor]


@dataclass
class DriveLog:
    """What happened, one row per control period (states and track quantities have N + 1)."""

    control_period: float
    track_length: float
    states: np.ndarray  #: (N + 1, nx)
    actions: np.ndarray  #: (N, nu)
    solve_ms: np.ndarray  #: (N,)
    lateral: np.ndarray  #: (N + 1,) signed lateral offset [m]
    progress: np.ndarray  #: (N + 1,) arc length driven since the start [m]
    offtrack: np.ndarray  #: (N + 1,) some part of the car beyond an edge
    lap_time_s: float | None  #: time to complete the requested laps, None if not completed
    planner: str = ""
    deadline_hits: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.lap_time_s is not None

    def summary(self) -> dict[str, float | bool | None]:
        abs_lat = np.abs(self.lateral)
        return {
            "completed": self.completed,
            "lap_time_s": self.lap_time_s,
            "steps": int(len(self.actions)),
            "mean_abs_lateral_m": float(abs_lat.mean()),
            "max_abs_lateral_m": float(abs_lat.max()),
            "offtrack_s": float(self.offtrack.sum() * self.control_period),
            "mean_speed_mps": float(self.states[:, State.V].mean()),
            "solve_ms_p50": float(np.percentile(self.solve_ms, 50)) if len(self.solve_ms) else 0.0,
            "solve_ms_p99": float(np.percentile(self.solve_ms, 99)) if len(self.solve_ms) else 0.0,
            "deadline_hits": self.deadline_hits,
        }


def drive(
    planner: Planner,
    plant: Plant,
    track: Track,
    initial_state: Tensor,
    control_period: float,
    vehicle_width: float,
    laps: float = 1.0,
    max_time: float | None = None,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> DriveLog:
    """Run until ``laps`` laps are driven or ``max_time`` seconds of driving have passed."""
    lookup = track.lookup(dtype=torch.float64)
    length = float(track.length)
    max_time = max_time if max_time is not None else 3.0 * laps * length / max(float(initial_state[State.V]), 1.0) + 30.0
    max_steps = int(np.ceil(max_time / control_period))
    x = initial_state.to(torch.float64)
    last = torch.zeros(2, dtype=torch.float64)
    warm: Tensor | None = None
    states, actions, solve_ms, lateral, progress, offtrack = [x.numpy().copy()], [], [], [], [0.0], []

    def locate(state: Tensor) -> tuple[float, float, bool]:
        return lookup.locate(state[State.X], state[State.Y], state[State.YAW], vehicle_width)

    s_prev, lat, off = locate(x)
    lateral.append(lat)
    offtrack.append(off)
    lap_time = None
    deadline_hits = 0
    for n in range(max_steps):
        started = time.perf_counter()
        result = planner.plan(x, warm, last)
        solve_ms.append((time.perf_counter() - started) * 1e3)
        deadline_hits += int(result.deadline_hit)
        u = result.actions[0].to(torch.float64)
        x = plant(x, u)
        warm = shift_plan(result.actions, planner.dt, control_period)
        last = u
        planner.prepare()
        s, lat, off = locate(x)
        ds = (s - s_prev + 0.5 * length) % length - 0.5 * length
        s_prev = s
        states.append(x.numpy().copy())
        actions.append(u.numpy().copy())
        lateral.append(lat)
        offtrack.append(off)
        progress.append(progress[-1] + ds)
        if on_step is not None:
            on_step(n, x)
        if progress[-1] >= laps * length:
            lap_time = (n + 1) * control_period
            break
    return DriveLog(
        control_period=control_period,
        track_length=length,
        states=np.asarray(states),
        actions=np.asarray(actions).reshape(-1, 2),
        solve_ms=np.asarray(solve_ms),
        lateral=np.asarray(lateral),
        progress=np.asarray(progress),
        offtrack=np.asarray(offtrack, dtype=bool),
        lap_time_s=lap_time,
        planner=getattr(planner, "name", ""),
        deadline_hits=deadline_hits,
    )
