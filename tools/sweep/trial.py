"""One trial, one result row: build the car, drive the episode, measure. Never raises.

``run_trial`` is what every executor runs (serially, or as a Ray task on any node): a plain
``Trial`` in, a flat dict out. Any failure (an unknown track, a config a planner cannot start
with, an exception mid-episode, a daemon that does not answer) becomes a row with
``status="failed"`` and the error, and the metric columns set to None.

In-process trials go through ``sim.closed_loop.run_config_episode`` (the daemon's control
step, no sockets). ``mode: daemon`` trials start ``python -m controller`` on a free loopback
port and drive it through ``sim.episode.run_episode`` in lockstep: the same product path a
user runs, at the cost of a process start (and of the daemon's solve budget, which makes the
numbers depend on the machine's load).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from tools.sweep.spec import Trial

#: The metric columns of a row, in table order (None when the trial failed).
METRICS = (
    "completed", "end_reason", "lap_time_s", "lap_times_s", "lap_time_est_s", "reference_lap_s",
    "lap_time_ratio", "lap_time_est_ratio", "progress_m", "offtrack_s", "offtrack", "spins", "mean_abs_lateral_m",
    "max_abs_lateral_m", "mean_speed_mps", "solve_ms_p50", "solve_ms_p99", "fallbacks", "stops",
    "steps",
)
#: Columns that depend on the machine (timings) or the run: left out of equality checks.
MACHINE_COLUMNS = ("solve_ms_p50", "solve_ms_p99", "wall_s", "worker", "finished_at")
DAEMON_START_S = 600.0  #: the first daemon start may compile the planner


def make_car(car: dict[str, Any]) -> Any:
    """The true car of a ``CarSpec`` dump (``sim.cars``' choice of model when it names none)."""
    from vehicle_models.true_car import TrueCar, default_car, load_true_car_config

    kind = car.get("kind") or default_car(car["vehicle"])
    return TrueCar.from_config(load_true_car_config(car["vehicle"], kind, **car["params"]))


def sensor_for(car: dict[str, Any], seed: int) -> Any:
    from sim.episode import SensorNoise

    noise = car["noise"]
    if not any(noise.values()):
        return None
    # A seed stream of its own: noise draws never shift with the planner's.
    return SensorNoise(**noise, seed=seed + 7919)


def reference_lap_s(track: Any, car: Any, vehicle: str, laps: float) -> float:
    """The friction-limited reference lap (``sim.cars.reference_lap_for``) of ``track`` with
    the vehicle's limits and the true car's mu (a slippery car has a slower reference),
    times ``laps``."""
    from sim.cars import reference_lap_for
    from vehicle_models.params import load_params

    params = load_params(vehicle)
    mu = getattr(car.params, "mu", params.mu)
    return float(reference_lap_for(track, params.model_copy(update={"mu": mu})).time_s) * laps


def _lap_time_estimate(lap_time: float | None, elapsed: float, progress: float, distance: float) -> float:
    """The lap time, or for a trial that did not finish, its elapsed time scaled to the
    distance at the pace it made (inf with no progress): a finite objective for tuning."""
    if lap_time is not None:
        return lap_time
    return elapsed * distance / progress if progress > 1e-6 else math.inf


def run_trial(trial: Trial) -> dict[str, Any]:
    """The result row of ``trial`` (see ``METRICS``); failures are rows too."""
    started = time.perf_counter()
    row: dict[str, Any] = trial.keys() | {"status": "ok", "error": None} | dict.fromkeys(METRICS)
    try:
        row.update(_inprocess(trial) if trial.mode == "inprocess" else _over_the_wire(trial))
    except Exception as e:  # a failed trial is a result, not the end of the sweep
        row.update(status="failed", error=f"{type(e).__name__}: {e}")
    row["wall_s"] = time.perf_counter() - started
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row


def _finish(metrics: dict[str, Any], track: Any, car: Any, trial: Trial, elapsed: float) -> dict[str, Any]:
    distance = trial.laps * track.length
    metrics["lap_time_est_s"] = _lap_time_estimate(metrics["lap_time_s"], elapsed, metrics["progress_m"], distance)
    metrics["reference_lap_s"] = reference_lap_s(track, car, trial.car["vehicle"], trial.laps)
    ref = metrics["reference_lap_s"]
    metrics["lap_time_ratio"] = metrics["lap_time_s"] / ref if ref and metrics["lap_time_s"] is not None else None
    metrics["lap_time_est_ratio"] = metrics["lap_time_est_s"] / ref if ref else None
    metrics["offtrack"] = metrics["offtrack_s"] > 0
    return metrics


def _inprocess(trial: Trial) -> dict[str, Any]:
    from controller.track import load_track
    from sim.closed_loop import run_config_episode

    torch.set_num_threads(trial.threads)
    config = trial.daemon_config()
    track = load_track(trial.track)
    car = make_car(trial.car)
    sensor = sensor_for(trial.car, trial.seed)
    log = run_config_episode(
        config, track, car, seed=trial.seed, laps=trial.laps, max_steps=trial.max_steps,
        start_speed=trial.start_speed, max_offtrack_s=trial.max_offtrack_s,
        measure=sensor.measure if sensor is not None else None, deadline=trial.deadline,
    )
    s = log.summary()
    metrics = {k: s[k] for k in METRICS if k in s}
    metrics["lap_times_s"] = list(log.lap_times_s)
    return _finish(metrics, track, car, trial, log.steps * log.control_period)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _over_the_wire(trial: Trial) -> dict[str, Any]:
    """The trial against a real daemon subprocess, lockstep over ZeroMQ on loopback."""
    from controller.track import load_track
    from sim.closed_loop import SPIN_HEADING_RAD, seeded, start_state
    from sim.episode import EpisodeConfig, run_episode
    from sim.remote import ControllerClient, DaemonUnavailable
    from vehicle_models.layout import State
    from vehicle_models.params import load_params

    config = seeded(trial.daemon_config(), trial.seed)
    track = load_track(trial.track)
    car = make_car(trial.car)
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    raw = config.model_dump(mode="json") | {"bind": endpoint}
    with tempfile.TemporaryDirectory(prefix="sweep-trial-") as folder:
        config_path = Path(folder) / "daemon.yaml"
        config_path.write_text(yaml.safe_dump(raw))
        daemon_log = open(Path(folder) / "daemon.log", "w+")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "controller", "--config", str(config_path), "--no-log"],
            stdout=daemon_log, stderr=subprocess.STDOUT,
        )
        try:
            with ControllerClient(endpoint, timeout_s=1.0) as client:
                deadline = time.monotonic() + DAEMON_START_S
                while True:
                    try:
                        client.wait_ready(5.0)
                        break
                    except DaemonUnavailable:
                        if daemon.poll() is not None or time.monotonic() > deadline:
                            daemon_log.seek(0)
                            tail = daemon_log.read()[-500:]
                            raise RuntimeError(f"the daemon did not start: {tail.strip()}") from None
                client.reset()
                speed = min(config.cost.target_speed, 5.0) if trial.start_speed is None else trial.start_speed
                x0 = np.zeros(7)
                x0[:5] = start_state(track, speed).numpy()
                lookup = track.lookup(torch.float64)
                spins, spinning, laps_at, driven = [0], [False], [], [0.0]

                def watch(n: int, state: np.ndarray, progress: float) -> None:
                    p = lookup.project(*(torch.tensor([float(state[i])], dtype=torch.float64)
                                         for i in (State.X, State.Y, State.YAW)))
                    err = abs(math.remainder(float(state[State.YAW]) - float(p.heading[0]), math.tau))
                    now = err > SPIN_HEADING_RAD and state[State.V] > 2.0
                    spins[0] += int(now and not spinning[0])
                    spinning[0] = now
                    driven[0] = progress
                    if progress >= (len(laps_at) + 1) * track.length:
                        laps_at.append((n + 1) * config.control_period)

                summary = run_episode(
                    client, car, track, x0,
                    EpisodeConfig(
                        control_period=config.control_period, laps=trial.laps,
                        max_steps=trial.max_steps, max_offtrack_s=trial.max_offtrack_s,
                        vehicle_width=load_params(config.vehicle).width, reply_timeout_s=5.0,
                        unavailable_limit_s=30.0,
                    ),
                    sensor_for(trial.car, trial.seed), on_step=watch,
                )
                stats = client.stats()
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            daemon_log.close()
    elapsed = summary.steps * config.control_period
    metrics = {
        "completed": summary.completed,
        "end_reason": "laps" if summary.end_reason == "lap" else summary.end_reason,
        "lap_time_s": summary.lap_time_s,
        "lap_times_s": [b - a for a, b in zip([0.0, *laps_at], laps_at)],
        "progress_m": driven[0],
        "offtrack_s": summary.offtrack_s,
        "spins": spins[0],
        "mean_abs_lateral_m": summary.mean_abs_lateral_m,
        "max_abs_lateral_m": summary.max_abs_lateral_m,
        "mean_speed_mps": summary.mean_speed_mps,
        "solve_ms_p50": float(stats.get("solve_ms_p50", summary.solve_ms_p50)),
        "solve_ms_p99": float(stats.get("solve_ms_p99", 0.0)),
        "fallbacks": summary.fallbacks,
        "stops": summary.stops,
        "steps": summary.steps,
    }
    return _finish(metrics, track, car, trial, elapsed)
