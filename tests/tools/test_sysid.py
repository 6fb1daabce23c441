"""System identification: parameters recovered from logs of a known car; clear CLI errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from controller.translog import TransitionLog
from tools.sysid.fit import FitOptions, run_fit
from vehicle_models.bundle import load_bundle
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.params import load_params

ROOT = Path(__file__).resolve().parents[2]
TRUE = {"steer_gain": 0.9, "steer_offset": 0.01, "wheelbase": 2.8, "ref_to_rear": 1.2}


def write_logs(directory: Path, seconds: float = 90.0, period: float = 0.05, seed: int = 0) -> None:
    """Drive the kinematic car with known parameters through rich, seeded manoeuvres."""
    params = load_params("passenger_car", **TRUE)
    car = KinematicBicycle(params, period)
    rng = np.random.default_rng(seed)
    x = torch.tensor([0.0, 0.0, 0.0, 8.0, 0.0], dtype=torch.float64)
    with TransitionLog(directory, flush_s=0.1) as log:
        for k in range(int(seconds / period)):
            t = k * period
            steer_rate = 0.3 * math.sin(0.7 * t) + 0.1 * rng.normal() - 0.5 * float(x[2])
            accel = 1.5 * math.sin(0.23 * t) + 0.3 * (9.0 - float(x[3]))
            u = torch.tensor([steer_rate, accel], dtype=torch.float64)
            state = dict(zip(("x", "y", "steer", "v", "yaw"), map(float, x)))
            log.step({"episode": 0, "seq": k, "stamp": t, "received": t, "replied": t, "state": state,
                      "action": {"steer_rate": steer_rate, "accel": accel}, "status": "ok"})
            x = car.step(x, u)


def test_kinematic_parameters_are_recovered(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs")
    report = run_fit([str(tmp_path / "logs")], tmp_path / "models", None, "passenger_car",
                     FitOptions(residual=False, progress=False))
    est = report["kinematic"]["estimates"]
    for name, value in TRUE.items():
        assert est[name] == pytest.approx(value, abs=2e-3 * max(1.0, abs(value))), (name, est)
    rmse = report["held_out_rmse"]
    assert rmse["refit kinematic"]["1s"]["pos"] < 0.01 < rmse["prior (kinematic)"]["1s"]["pos"]
    bundle = load_bundle(report["bundle"])
    assert bundle.params.steer_gain == pytest.approx(TRUE["steer_gain"], abs=2e-3)
    assert bundle.data_digest and bundle.version.startswith("sysid-")


def test_residual_training_is_seeded_and_beats_the_prior(tmp_path: Path) -> None:
    write_logs(tmp_path / "logs", seconds=60.0)
    reports = [
        run_fit([str(tmp_path / "logs")], tmp_path / f"m{i}", None, "passenger_car",
                FitOptions(epochs=15, progress=False))
        for i in range(2)
    ]
    assert reports[0]["held_out_rmse"] == reports[1]["held_out_rmse"]
    assert reports[0]["residual"]["epochs"] <= 15


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.sysid", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_errors_are_clear_and_have_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for args, message in [
        (["fit", "--logs", str(tmp_path / "absent"), "--out", str(tmp_path / "o")], "no such file"),
        (["fit", "--logs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], "no .mcap log files"),
    ]:
        out = run_cli(*args)
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
    short = tmp_path / "short"
    with TransitionLog(short) as log:
        for k in range(5):
            log.step({"episode": 0, "seq": k, "stamp": 0.05 * k, "received": 0, "replied": 0,
                      "state": {"x": 0, "y": 0, "steer": 0, "v": 1, "yaw": 0},
                      "action": {"steer_rate": 0, "accel": 0}, "status": "ok"})
    out = run_cli("fit", "--logs", str(short), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "consecutive steps" in out.stderr and "Traceback" not in out.stderr


def test_steps_where_the_car_lost_control_are_left_out_of_the_fit(tmp_path: Path) -> None:
    """A spin (|slip| above the simulator's spin threshold) breaks the data into blocks around it."""
    from controller.translog import load_steps
    from tools.sysid.data import LOST_CONTROL_SLIP_RAD, blocks

    period, n = 0.05, 1200
    spin = range(500, 560)
    with TransitionLog(tmp_path / "logs", flush_s=0.1) as log:
        for k in range(n):
            slip = 0.9 if k in spin else 0.01
            state = {"x": 8.0 * k * period, "y": 0.0, "steer": 0.0, "v": 8.0, "yaw": 0.0, "yaw_rate": 0.0, "slip": slip}
            log.step({"episode": 0, "seq": k, "stamp": k * period, "received": 0.0, "replied": 0.0, "state": state,
                      "action": {"steer_rate": 0.0, "accel": 0.0}, "status": "ok"})
    steps = load_steps(tmp_path / "logs")
    chosen, _ = blocks(steps, state_dim=7)
    assert all(np.abs(b.states[:, 6]).max() <= LOST_CONTROL_SLIP_RAD for b in chosen)
    # every transition inside the two stretches under control is kept: 499 before, 639 after
    assert sum(b.steps for b in chosen) == (spin.start - 1) + (n - spin.stop - 1)
