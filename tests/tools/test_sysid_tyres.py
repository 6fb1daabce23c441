"""Tyre identification: cornering stiffness from a seeded drive of the simulator's true car;
mu only where the logs reach the friction limit; the dynamic-state candidates in the report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from controller.translog import TransitionLog
from sim.cars import make_true_car
from tools.sysid.compare import compare_bundles
from tools.sysid.fit import FitOptions, run_fit
from tools.sysid.tyre_fit import fit_tyres
from vehicle_models.bundle import load_bundle
from vehicle_models.dynamic_nominal import SingleTrackNominal
from vehicle_models.layout import State
from vehicle_models.single_track import load_single_track_params

FIELDS = ("x", "y", "steer", "v", "yaw", "yaw_rate", "slip")
TRUE_STIFFNESS = load_single_track_params("passenger_car").stiffness_front


def drive_true_car(directory: Path, seconds: float = 60.0, period: float = 0.05, seed: int = 0) -> float:
    """The single-track true car (linear tyres, actuator lag and dead time of the vehicle file)
    weaving at 10-14 m/s under seeded steering; returns the largest |v yaw_rate| / g seen."""
    car = make_true_car("passenger_car", "st")
    car.reset(np.array([0.0, 0.0, 0.0, 12.0, 0.0, 0.0, 0.0]))
    rng = np.random.default_rng(seed)
    x = car.state
    peak = 0.0
    with TransitionLog(directory, flush_s=0.1) as log:
        for k in range(int(seconds / period)):
            t = k * period
            target = 0.06 * math.sin(0.9 * t) + 0.03 * math.sin(2.3 * t + 1.0) + 0.01 * rng.normal()
            steer_rate = float(np.clip(3.0 * (target - x[State.STEER]), -0.4, 0.4))
            accel = 1.0 * math.sin(0.31 * t) + 0.5 * (12.0 - x[State.V])
            state = dict(zip(FIELDS, map(float, x)))
            log.step({"episode": 0, "seq": k, "stamp": t, "received": t, "replied": t, "state": state,
                      "action": {"steer_rate": steer_rate, "accel": accel}, "status": "ok"})
            x = car.step(np.array([steer_rate, accel]), period)
            peak = max(peak, abs(x[State.V] * x[State.YAW_RATE]) / 9.81)
    return peak


@pytest.mark.slow
def test_stiffness_moves_to_the_true_cars_from_a_wrong_start_and_mu_is_held(tmp_path: Path) -> None:
    peak = drive_true_car(tmp_path / "logs")
    assert 0.2 < peak < 0.8  # cornering, but never near mu g
    start = 12.0
    report = run_fit([str(tmp_path / "logs")], tmp_path / "models", None, "passenger_car",
                     FitOptions(residual=False, progress=False, nominal="single_track", stiffness=(start, start)))
    tyres = report["tyres"]
    for name in ("stiffness_front", "stiffness_rear"):
        fitted = tyres["estimates"][name]
        assert abs(fitted - TRUE_STIFFNESS) < 0.25 * abs(start - TRUE_STIFFNESS), (name, fitted)
    assert tyres["held_at_prior"] == ["mu"] and "never approach the friction limit" in tyres["notes"][0]
    assert tyres["excitation"]["max_lateral_g"] == pytest.approx(peak, rel=0.2)
    assert tyres["excitation"]["max_slip_angle_front"] > 0.005
    rmse = report["held_out_rmse"]
    assert rmse["single_track"]["1s"]["yaw_rate"] < rmse["single_track (prior tyres)"]["1s"]["yaw_rate"]
    assert rmse["single_track"]["1s"]["yaw_rate"] < rmse["refit kinematic"]["1s"]["yaw_rate"]
    bundle = load_bundle(report["bundle"])
    assert bundle.nominal == "single_track" and bundle.state_dim == 7
    assert bundle.single_track.stiffness_front == pytest.approx(tyres["estimates"]["stiffness_front"])
    # The same comparison on logs none was fitted on: a second drive with another seed.
    drive_true_car(tmp_path / "other", seconds=20.0, seed=1)
    rows = compare_bundles([str(tmp_path / "other")], [report["bundle"]])
    assert list(rows) == ["kinematic (passenger_car)", "single_track"]
    assert rows["single_track"]["1s"]["yaw_rate"] < rows["kinematic (passenger_car)"]["1s"]["yaw_rate"]


def test_mu_is_fitted_where_the_transitions_reach_the_limit() -> None:
    """Transitions of a friction-limited car (mu 0.7) driven past its limit: mu moves there."""
    true = load_single_track_params("passenger_car", mu=0.7)
    g = torch.Generator().manual_seed(0)
    n = 600
    x = torch.zeros(n, 7, dtype=torch.float64)
    x[:, State.V] = 10 + 10 * torch.rand(n, generator=g, dtype=torch.float64)
    x[:, State.STEER] = 0.15 * (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1)
    x[:, State.YAW_RATE] = x[:, State.V] * torch.tan(x[:, State.STEER]) / 2.578 * 0.6
    x[:, State.SLIP] = 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
    u = torch.zeros(n, 2, dtype=torch.float64)
    y = SingleTrackNominal(true, 0.05).step(x, u)
    fit = fit_tyres(load_single_track_params("passenger_car"), (x.numpy(), u.numpy(), y.numpy()), 0.05)
    assert "mu" not in fit.held and fit.excitation.max_lateral_g > 0.8
    assert fit.estimates["mu"] == pytest.approx(0.7, abs=0.03)
