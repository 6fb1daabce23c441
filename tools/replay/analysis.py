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


def lap_marks(distance: np.ndarray, times: np.ndarray, speed_end: float, length: float) -> tuple[float, list[float]]:
    """(laps driven, the times each whole lap was completed), crossings interpolated.

    The log holds the states the daemon was sent. The last action then holds for one more
    period, in which the car moves on about ``speed * period`` unlogged: the simulator ends an
    episode on the state that completes the lap and never sends it. That stretch counts, so
    a run the simulator calls one lap is one lap here too.
    """
    dt = np.diff(times)
    period = float(np.median(dt[dt > 0])) if (dt > 0).any() else 0.0
    final = float(distance[-1]) + max(speed_end, 0.0) * period
    done = max(int(final // length), 0)
    marks = []
    for k in range(1, done + 1):
        target = k * length
        i = int(np.argmax(distance >= target)) if distance[-1] >= target else len(distance)
        if i == 0:
            marks.append(float(times[0]))
        elif i == len(distance):  # in the unlogged last period
            marks.append(float(times[-1] + (target - distance[-1]) / max(final - distance[-1], 1e-9) * period))
        else:
            frac = (target - distance[i - 1]) / max(distance[i] - distance[i - 1], 1e-9)
            marks.append(float(times[i - 1] + frac * (times[i] - times[i - 1])))
    return final / length, marks


def analyse(name: str, steps: Steps, track: Track, error_count: int = 0) -> RunAnalysis:
    if len(steps) == 0:
        raise DataError(f"{name}: no step records")
    distance, lateral = track_progress(track, steps.states)
    times = steps.stamp
    laps_driven, crossings = lap_marks(distance, times, float(steps.states[-1, State.V]), track.length)
    laps_done = len(crossings)
    marks = [float(times[0]), *crossings]
    lap_times = [float(b - a) for a, b in zip(marks[:-1], marks[1:])]
    handle_ms = (steps.replied - steps.received) * 1e3
    status = steps.status
    summary = {
        "steps": int(len(steps)),
        "episodes": int(len(set(steps.episode.tolist()))),
        "duration_s": float(times[-1] - times[0]),
        "laps": laps_done,
        "laps_driven": float(laps_driven),
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
