"""The one in-process closed-loop driver: the daemon's control step drives the true car.

Oracles: the same seed gives bit-identical arrays, another seed other ones (MPPI's noise is
seeded by the trial); a car started facing backwards counts as a spin; a planner that fails
falls back, then stops the car, as the daemon does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.config import load_config
from controller.core import ControlCore
from controller.planners.base import PlanResult
from controller.track import load_track
from sim.closed_loop import STATUS_CODES, core_for_config, make_core, run_closed_loop, run_config_episode, start_state
from vehicle_models.params import load_params
from vehicle_models.true_car import TrueCar

SMALL = ["planner.num_samples=64", "planner.horizon=10", "planner.compile=false", "threads=1"]


@pytest.fixture(scope="module")
def track():
    return load_track("circle")


def test_same_seed_same_episode_other_seed_differs(track) -> None:
    config = load_config(None, SMALL)
    car = TrueCar.named("passenger_car", mu=0.9)
    a = run_config_episode(config, track, car, seed=3, max_steps=40)
    b = run_config_episode(config, track, car, seed=3, max_steps=40)
    c = run_config_episode(config, track, car, seed=4, max_steps=40)
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)
    assert a.states.shape == (41, 7) and a.actions.shape == (40, 2) and a.status.shape == (40,)
    summary = a.summary()
    assert summary["end_reason"] == "step_limit" and summary["steps"] == 40
    assert summary["spins"] == 0 and summary["offtrack_s"] == 0.0
    assert 0 < summary["progress_m"] < track.length
    assert summary["mean_abs_lateral_m"] < 0.5


class _FailingPlanner:
    """A real planner whose plan raises after ``good`` calls (a model gone bad mid-run)."""

    def __init__(self, inner, good: int):
        self.inner, self.good, self.calls = inner, good, 0
        self.horizon, self.dt, self.name = inner.horizon, inner.dt, "failing"

    def plan(self, *args, **kwargs) -> PlanResult:
        self.calls += 1
        if self.calls > self.good:
            raise RuntimeError("model diverged")
        return self.inner.plan(*args, **kwargs)

    def prepare(self) -> None:
        self.inner.prepare()


def test_failing_planner_falls_back_then_stops(track) -> None:
    config = load_config(None, SMALL + ["max_consecutive_fallbacks=3"])
    real = core_for_config(config, track)
    params = load_params(config.vehicle)
    core: ControlCore = make_core(_FailingPlanner(real.planner, good=5), params, config.control_period,
                                  max_consecutive_fallbacks=3)
    log = run_closed_loop(core, TrueCar.named("passenger_car"), track, start_state(track, 5.0).numpy(),
                          config.control_period, params.width, max_steps=15)
    codes = log.status.tolist()
    assert codes == [STATUS_CODES["ok"]] * 5 + [STATUS_CODES["fallback"]] * 3 + [STATUS_CODES["stop"]] * 7
    assert log.summary()["fallbacks"] == 3 and log.summary()["stops"] == 7
    assert log.states[-1, 3] < log.states[8, 3]  # braking


def test_backwards_start_is_a_spin(track) -> None:
    config = load_config(None, SMALL)
    x0 = start_state(track, 5.0).numpy()
    x0[4] += math.pi
    log = run_closed_loop(core_for_config(config, track), TrueCar.named("passenger_car"), track, x0, 0.05,
                          1.674, max_steps=3)
    assert log.spinning[0] and log.summary()["spins"] >= 1


def test_a_seven_field_model_drives_in_process_from_a_five_field_start(track, tmp_path) -> None:
    """The start state has no yaw_rate or slip: the core fills them, as the daemon does on the wire."""
    from vehicle_models.bundle import ModelBundle, save_bundle

    config = load_config(None, SMALL)
    bundle = save_bundle(ModelBundle("seven", load_params(config.vehicle), nominal="kinematic_dynamic_state"),
                         tmp_path / "seven")
    config = load_config(None, SMALL + [f"model.bundle={bundle}"])
    log = run_config_episode(config, track, TrueCar.named("passenger_car", "std"), max_steps=20, start_speed=5.0)
    assert log.states.shape == (21, 7) and np.isnan(log.states[0, 5:]).all()
    assert np.isfinite(log.states[1:]).all() and (log.status == STATUS_CODES["ok"]).all()
    assert np.abs(log.lateral).max() < 0.5
