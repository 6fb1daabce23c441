"""Numbers from a log: laps, tracking, timing, model prediction error against horizon."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from controller.track import Track
from controller.translog import Steps
from tools.sysid.data import DataError, blocks, windows
from tools.sysid.evaluate import rollout
from vehicle_models.angles import wrap_angle
from vehicle_models.layout import State


@dataclass
class RunAnalysis:
    name: str
    distance: np.ndarray  #: (N,) arc length driven since the first record [m]
    lateral: np.ndarray  #: (N,) signed lateral offset [m]
    lap_times: list[float]
    summary: dict[str, Any] = field(default_factory=dict)


def track_progress(track: Track, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lookup = track.lookup(torch.float64)
    t = lambda i: torch.as_tensor(states[:, i], dtype=torch.float64)  # noqa: E731
    p = lookup.project(t(State.X), t(State.Y), t(State.YAW))
    s = p.s.numpy()
    ds = (np.diff(s) + 0.5 * track.length) % track.length - 0.5 * track.length
    return np.concatenate([[0.0], np.cumsum(ds)]), p.lateral.numpy()


def analyse(name: str, steps: Steps, track: Track, error_count: int = 0) -> RunAnalysis:
    if len(steps) == 0:
        raise DataError(f"{name}: no step records")
    distance, lateral = track_progress(track, steps.states)
    laps_done = int(distance[-1] // track.length) if len(distance) else 0
    crossings = [int(np.argmax(distance >= k * track.length)) for k in range(1, laps_done + 1)]
    times = steps.stamp
    marks = [times[0], *(times[i] for i in crossings)]
    lap_times = [float(b - a) for a, b in zip(marks[:-1], marks[1:])]
    handle_ms = (steps.replied - steps.received) * 1e3
    status = steps.status
    summary = {
        "steps": int(len(steps)),
        "episodes": int(len(set(steps.episode.tolist()))),
        "duration_s": float(times[-1] - times[0]),
        "laps": laps_done,
        "lap_times_s": lap_times,
        "mean_abs_lateral_m": float(np.mean(np.abs(lateral))),
        "p95_abs_lateral_m": float(np.percentile(np.abs(lateral), 95)),
        "max_abs_lateral_m": float(np.max(np.abs(lateral))),
        "mean_speed_mps": float(np.mean(steps.states[:, State.V])),
        "max_speed_mps": float(np.max(steps.states[:, State.V])),
        "solve_ms_p50": float(np.percentile(steps.solve_ms, 50)),
        "solve_ms_p99": float(np.percentile(steps.solve_ms, 99)),
        "latency_ms_p50": float(np.percentile(handle_ms, 50)),
        "latency_ms_p99": float(np.percentile(handle_ms, 99)),
        "latency_ms_max": float(np.max(handle_ms)),
        "deadline_misses": int(steps.deadline_missed.sum()),
        "fallbacks": int((status == "fallback").sum()),
        "stops": int((status == "stop").sum()),
        "errors": error_count,
        "models": sorted(set(steps.model.tolist())),
        "planners": sorted(set(steps.planner.tolist())),
    }
    return RunAnalysis(name, distance, lateral, lap_times, summary)


def prediction_error_curve(model, steps: Steps, max_horizon_s: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Horizons [s] and position RMSE [m] of open-loop predictions over the whole log."""
    all_blocks, period = blocks(steps, holdout_every=2)
    length = max(1, int(round(max_horizon_s / period)))
    try:
        w = windows(all_blocks, length, stride=max(1, length // 4))
    except DataError:
        length = min(b.steps for b in all_blocks)
        w = windows(all_blocks, length, stride=1)
    pred = rollout(model, w)
    err = pred - w.measured
    pos = np.sqrt(np.mean(err[..., State.X] ** 2 + err[..., State.Y] ** 2, axis=0))
    return (np.arange(1, length + 1) * period), pos


def yaw_error(pred: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.asarray(wrap_angle(torch.as_tensor(pred - measured)))
