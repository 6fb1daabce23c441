"""The closed model-based loop, end to end: drive, log, refit, reload, drive again.

The daemon starts from a deliberately wrong nominal model (wheelbase +15 %, steering gain 0.85,
no residual) on the simulator's true car (dynamic single-track model with tyres and actuator
lag). It drives ``laps`` laps; ``tools.sysid fit`` refits from those logs; the daemon is told
to ``reload`` and picks up the new bundle between steps; it drives ``laps`` more laps. The
prediction error is measured on the second run's laps, which the fit never saw.

Default scenario: the 50 m circle at 10 m/s (2 m/s^2 lateral). Tyre slip matters there: the
kinematic model with the *true* geometry still misses ~0.11 m at 1 s (reported as
``rmse_reference``), which only a refit of the slip (``ref_to_rear``, residual) removes. At
11-12 m/s the wrong nominal model's closed loop is unstable on this car (growing weave, then
stop-and-go at ~3 m/s), so its logs hold almost no driving at the target speed and a refit
cannot learn the at-speed slip from them (see docs/sysid.md).

The fitted input dead time (``fit_metrics.dead_time_s``) comes with the reload: the daemon
rebuilds its delay compensation from the new bundle, with max(configured, fitted) dead time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from controller.protocol_client import DaemonUnavailable
from controller.translog import Steps, load_steps
from controller.track import load_track
from sim.__main__ import free_port, stop_process
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, Summary, run_episode
from sim.remote import ControllerClient
from tools.sysid.data import Block, blocks, windows
from tools.sysid.evaluate import prediction_rmse
from tools.sysid.fit import MAX_DEAD_TIME_S, FitOptions, dead_time_of, run_fit
from vehicle_models.bundle import ModelBundle, load_bundle, save_bundle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import load_params
from vehicle_models.true_car import TrueCar

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LoopSettings:
    track: str = "circle"
    target_speed: float = 10.0
    laps: float = 2.0
    planner_overrides: tuple[str, ...] = ("planner.num_samples=512", "planner.horizon=30")
    wheelbase_factor: float = 1.15
    steer_gain: float = 0.85
    epochs: int = 300
    seed: int = 0
    configured_dead_time: float = 0.0  #: the daemon's ``dead_time`` [s]


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


def wait_for_model(client: ControllerClient, version: str, timeout_s: float) -> None:
    """Poll ``stats`` until the daemon runs model ``version`` (a reload is prepared off the
    control path and swapped in between steps)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            if client.stats()["model"] == version:
                return
        except DaemonUnavailable:
            pass  # busy preparing the new planner (a compile holds the interpreter); ask again
        time.sleep(0.2)
    raise TimeoutError(f"the daemon did not switch to {version} within {timeout_s} s")


def start_daemon(
    out: Path, track: str, logs: Path | None, overrides: Sequence[str], tag: str, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen, str]:
    """``python -m controller`` on a free loopback port, logging transitions to ``logs`` (None:
    no log), its output in ``out/daemon-<tag>.out``; stop it with ``sim.__main__.stop_process``."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "controller", "--bind", endpoint, "--track", track,
        *(["--log-dir", str(logs)] if logs is not None else ["--no-log"]), *extra,
        *(f"--set={o}" for o in overrides),
    ]
    with open(out / f"daemon-{tag}.out", "w") as output:
        return subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT), endpoint


def _start_daemon(work: Path, s: LoopSettings, models: Path, logs: Path, dead_time: float, tag: str):
    overrides = (f"model.model_dir={models}", f"cost.target_speed={s.target_speed}", f"dead_time={dead_time}",
                 *s.planner_overrides)
    return start_daemon(work, s.track, logs, overrides, tag)


def held_out_blocks(steps: Steps, block_s: float = 5.0) -> tuple[list[Block], float]:
    """Every block of ``steps``, for an evaluation (no fit trains on them)."""
    all_blocks, period = blocks(steps, block_s=block_s, holdout_every=2)
    for b in all_blocks:
        b.held_out = True
    return all_blocks, period


def held_out_rmse(bundle: ModelBundle, all_blocks: list[Block], period: float) -> dict[str, dict[str, float]]:
    """The bundle's open-loop prediction RMSE on ``all_blocks`` as the controller uses it: with
    the dead time it was fitted with. Every model sees windows starting at the same moments."""
    delay = int(round(dead_time_of(bundle) / period))
    held_out = windows(all_blocks, int(round(1.0 / period)), stride=2, delay=delay,
                       skip=int(round(MAX_DEAD_TIME_S / period)))
    return prediction_rmse(bundle.build(period, dtype=torch.float64), held_out, period)


def run_loop(work: Path, s: LoopSettings = LoopSettings(), progress: bool = False) -> dict[str, Any]:
    models, logs = work / "models", work / "logs"
    base = wrong_bundle(models, s)
    daemon, endpoint = _start_daemon(work, s, models, logs, s.configured_dead_time, "before")
    try:
        with ControllerClient(endpoint, timeout_s=2.0) as client:
            client.wait_ready(600)
            before = _drive(client, s)
            report = run_fit([str(logs)], models, str(base), "passenger_car",
                             FitOptions(epochs=s.epochs, seed=s.seed, progress=progress))
            client.reload(report["bundle"])
            wait_for_model(client, report["version"], 600)
            after = _drive(client, s)
        after_dead_time = max(s.configured_dead_time, float(report["dead_time_s"]))
    finally:
        stop_process(daemon)

    # Held out: the laps driven after the reload (the last episode), never seen by the fit.
    steps = load_steps(logs)
    steps_after = steps.select(steps.episode == int(steps.episode.max()))
    all_blocks, period = held_out_blocks(steps_after, block_s=10.0)
    rmse = {key: held_out_rmse(load_bundle(path), all_blocks, period)
            for key, path in (("before", base), ("after", report["bundle"]))}
    rmse_before, rmse_after = rmse["before"]["1s"]["pos"], rmse["after"]["1s"]["pos"]
    # Reference: the kinematic model with the true car's geometry (passenger_car), at its best
    # dead time on these windows. What is left above the refit is what geometry cannot give
    # (tyre slip, actuator lag).
    true_geometry = KinematicBicycle(load_params("passenger_car"), period)
    reference = min(
        prediction_rmse(true_geometry, windows(all_blocks, int(round(1.0 / period)), stride=2, delay=d,
                                               skip=int(round(MAX_DEAD_TIME_S / period))), period)["1s"]["pos"]
        for d in range(int(round(MAX_DEAD_TIME_S / period)) + 1)
    )
    return {
        "rmse_pos_1s_m": {"before": rmse_before, "after": rmse_after},
        "mean_abs_lateral_m": {"before": before.mean_abs_lateral_m, "after": after.mean_abs_lateral_m},
        "offtrack_s": {"before": before.offtrack_s, "after": after.offtrack_s},
        "lap_time_s": {"before": before.lap_time_s, "after": after.lap_time_s},
        "completed": {"before": before.completed, "after": after.completed},
        "model": {"before": "wrong-nominal", "after": report["version"]},
        "rmse_held_out_laps": rmse,
        "dead_time_s": {"before": 0.0, "after": report["dead_time_s"]},
        "daemon_dead_time_s": {"before": s.configured_dead_time, "after": after_dead_time},
        "rmse_reference": {"true_geometry_kinematic_1s_pos_m": reference},
        "fit": {"kinematic": report["kinematic"]["estimates"], "chosen": report["chosen"],
                "weak_directions": report["kinematic"]["weak_directions"],
                "excitation_warnings": report["excitation_warnings"],
                "held_out_rmse_in_fit": report["held_out_rmse"]},
        "settings": {"track": s.track, "target_speed": s.target_speed, "laps": s.laps,
                     "planner": list(s.planner_overrides), "epochs": s.epochs,
                     "after_drive": "reload"},
    }

