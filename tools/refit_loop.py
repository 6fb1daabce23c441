"""The closed model-based loop, end to end: drive, log, refit, reload, drive again.

The daemon starts from a deliberately wrong nominal model (wheelbase +15 %, steering gain 0.85,
no residual) on the simulator's true car (dynamic single-track model with tyres and actuator
lag). It drives ``laps`` laps; ``tools.sysid fit`` refits from those logs; the daemon is told
to ``reload`` and picks up the new bundle between steps; it drives ``laps`` more laps. The
prediction error is measured on the second run's laps, which the fit never saw.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from controller.protocol_client import DaemonUnavailable
from controller.translog import load_steps
from controller.track import load_track
from sim.__main__ import free_port
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, Summary, run_episode
from sim.remote import ControllerClient
from tools.sysid.data import blocks, windows
from tools.sysid.evaluate import prediction_rmse
from tools.sysid.fit import MAX_DEAD_TIME_S, FitOptions, dead_time_of, run_fit
from vehicle_models.bundle import ModelBundle, load_bundle, save_bundle
from vehicle_models.params import load_params
from vehicle_models.true_car import TrueCar

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LoopSettings:
    track: str = "random:0"
    target_speed: float = 12.0
    laps: float = 2.0
    planner_overrides: tuple[str, ...] = ("planner.num_samples=512", "planner.horizon=30")
    wheelbase_factor: float = 1.15
    steer_gain: float = 0.85
    epochs: int = 300
    seed: int = 0


def wrong_bundle(models: Path, s: LoopSettings) -> Path:
    p = load_params("passenger_car")
    wrong = p.model_copy(update={"wheelbase": p.wheelbase * s.wheelbase_factor, "steer_gain": s.steer_gain})
    return save_bundle(ModelBundle("wrong-nominal", wrong), models / "wrong-nominal", overwrite=True)


def _drive(client: ControllerClient, s: LoopSettings) -> Summary:
    track = load_track(s.track)
    x0 = np.zeros(7)
    x0[:5] = start_state(track, 8.0).numpy()
    client.reset()
    return run_episode(
        client, TrueCar.named("passenger_car"), track, x0,
        EpisodeConfig(laps=s.laps, vehicle_width=load_params("passenger_car").width, max_offtrack_s=5.0),
    )


def _wait_for_model(client: ControllerClient, version: str, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            if client.stats()["model"] == version:
                return
        except DaemonUnavailable:
            pass  # busy preparing the new planner (a compile holds the interpreter); ask again
        time.sleep(0.2)
    raise TimeoutError(f"the daemon did not switch to {version} within {timeout_s} s")


def run_loop(work: Path, s: LoopSettings = LoopSettings(), progress: bool = False) -> dict[str, Any]:
    models, logs = work / "models", work / "logs"
    base = wrong_bundle(models, s)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "controller", "--bind", endpoint, "--track", s.track, "--log-dir", str(logs),
        f"--set=model.model_dir={models}", f"--set=cost.target_speed={s.target_speed}",
        *(f"--set={o}" for o in s.planner_overrides),
    ]
    with open(work / "daemon.out", "w") as out:
        daemon = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        with ControllerClient(endpoint, timeout_s=2.0) as client:
            client.wait_ready(600)
            before = _drive(client, s)
            report = run_fit([str(logs)], models, str(base), "passenger_car",
                             FitOptions(epochs=s.epochs, seed=s.seed, progress=progress))
            client.reload(report["bundle"])
            _wait_for_model(client, report["version"], 600)
            after = _drive(client, s)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()

    # Held out: the laps driven after the reload (episode 2), never seen by the fit.
    steps = load_steps(logs)
    steps_after = steps.select(steps.episode == int(steps.episode.max()))
    all_blocks, period = _all_blocks(steps_after)
    rmse = {}
    for key, path in (("before", base), ("after", report["bundle"])):
        # Each model as the controller uses it: with the dead time it was fitted with. Every
        # model sees the same windows (same start moments, same measured states).
        bundle = load_bundle(path)
        delay = int(round(dead_time_of(bundle) / period))
        held_out = windows(all_blocks, int(round(1.0 / period)), stride=2, delay=delay,
                           skip=int(round(MAX_DEAD_TIME_S / period)))
        rmse[key] = prediction_rmse(bundle.build(period, dtype=torch.float64), held_out, period)
    rmse_before, rmse_after = rmse["before"]["1s"]["pos"], rmse["after"]["1s"]["pos"]
    return {
        "rmse_pos_1s_m": {"before": rmse_before, "after": rmse_after},
        "mean_abs_lateral_m": {"before": before.mean_abs_lateral_m, "after": after.mean_abs_lateral_m},
        "offtrack_s": {"before": before.offtrack_s, "after": after.offtrack_s},
        "lap_time_s": {"before": before.lap_time_s, "after": after.lap_time_s},
        "completed": {"before": before.completed, "after": after.completed},
        "model": {"before": "wrong-nominal", "after": report["version"]},
        "rmse_held_out_laps": rmse,
        "dead_time_s": {"before": 0.0, "after": report["dead_time_s"]},
        "fit": {"kinematic": report["kinematic"]["estimates"], "chosen": report["chosen"],
                "weak_directions": report["kinematic"]["weak_directions"],
                "excitation_warnings": report["excitation_warnings"],
                "held_out_rmse_in_fit": report["held_out_rmse"]},
        "settings": {"track": s.track, "target_speed": s.target_speed, "laps": s.laps},
    }


def _all_blocks(steps):
    all_blocks, period = blocks(steps, holdout_every=2)
    for b in all_blocks:
        b.held_out = True
    return all_blocks, period
