"""Control core: output guard, fallback to the shifted plan, controlled stop, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from controller.core import ControlCore, guard_action
from controller.costs import CostConfig, TrackCost
from controller.planners.mppi import MPPIConfig
from controller.planners.registry import build_planner
from controller.track import load_track
from sim.closed_loop import start_state
from vehicle_models import KinematicBicycle, load_params

PARAMS = load_params("passenger_car")


class FaultyPlanner:
    """A real MPPI planner with fault injection: raises or returns NaN while told to."""

    def __init__(self, planner):
        self.inner = planner
        self.name, self.horizon, self.dt = planner.name, planner.horizon, planner.dt
        self.fault: str | None = None

    def prepare(self) -> None:
        self.inner.prepare()

    def plan(self, *args, **kwargs):
        self.seen = args[0].clone()  # the state the planner was given, as it was at the call
        result = self.inner.plan(*args, **kwargs)
        if self.fault == "raise":
            raise RuntimeError("solver blew up")
        if self.fault == "nan":
            result.actions[0, 0] = float("nan")
        return result


@pytest.fixture(scope="module")
def track():
    return load_track("circle")


def make_core(track, max_fallbacks: int = 3) -> tuple[ControlCore, FaultyPlanner]:
    cost = TrackCost(CostConfig(), track, PARAMS)
    planner = FaultyPlanner(
        build_planner(MPPIConfig(num_samples=128, horizon=20, compile=False), KinematicBicycle(PARAMS, 0.05), cost, PARAMS)
    )
    return ControlCore(planner, PARAMS, 0.05, 0.03, max_fallbacks, stop_decel=4.0), planner


def state7(track, v: float = 10.0) -> np.ndarray:
    x = np.full(7, np.nan)
    x[:5] = start_state(track, v).numpy()
    return x


def test_guard_clamps_and_never_emits_nan() -> None:
    state = np.array([0, 0, PARAMS.steer_max, 5.0, 0, np.nan, np.nan])
    out = guard_action(np.array([np.nan, 1e9]), state, PARAMS)
    assert out == (0.0, PARAMS.accel_max)
    out = guard_action(np.array([0.3, -1.0]), state, PARAMS)
    assert out[0] == 0.0  # at the steering end stop, no further
    stopped = np.array([0, 0, 0, 0.0, 0, 0, 0])
    assert guard_action(np.array([-0.1, -5.0]), stopped, PARAMS)[1] == 0.0


def test_fallback_then_stop_then_recovery(track) -> None:
    core, planner = make_core(track, max_fallbacks=2)
    x = state7(track)
    first = core.step(x, 0.0)
    assert first.status == "ok" and first.plan is not None
    planner.fault = "raise"
    second = core.step(x, 0.05)
    assert second.status == "fallback" and "solver blew up" in second.reason
    # The fallback is the previous plan shifted by one period.
    np.testing.assert_allclose(second.action, guard_action(first.plan[1], x, PARAMS), atol=1e-6)
    planner.fault = "nan"
    assert core.step(x, 0.10).status == "fallback"
    stop = core.step(x, 0.15)
    assert stop.status == "stop"
    assert stop.action == (0.0, -4.0)
    planner.fault = None
    assert core.step(x, 0.20).status == "ok"
    assert core.consecutive_fallbacks == 0


def test_no_plan_to_fall_back_on_means_stop(track) -> None:
    core, planner = make_core(track)
    planner.fault = "raise"
    out = core.step(state7(track), 0.0)
    assert out.status == "stop" and np.isfinite(out.action).all() and out.plan is None


@pytest.mark.parametrize("elapsed", [-0.01, 0.0, 0.02, 0.05, 0.1 - 1e-12, 0.15 + 1e-12, 0.137, 0.4, 10.0])
def test_numpy_shift_matches_the_planners_shift_plan(elapsed: float) -> None:
    import torch

    from controller.core import shift_actions
    from controller.planners.base import shift_plan

    plan = np.random.default_rng(3).normal(size=(8, 2))
    expected = shift_plan(torch.from_numpy(plan), 0.05, elapsed).numpy()
    np.testing.assert_allclose(shift_actions(plan, 0.05, elapsed), expected, rtol=0, atol=1e-9)
    into = np.full_like(plan, np.nan)
    assert shift_actions(plan, 0.05, elapsed, out=into) is into
    np.testing.assert_allclose(into, expected, rtol=0, atol=1e-9)


def test_float_delay_prediction_matches_the_torch_one() -> None:
    import torch

    from controller.delay import DelayCompensator

    for integrator in ("exact", "rk4"):
        comp = DelayCompensator(KinematicBicycle(PARAMS, 0.05, integrator), dead_time=0.15, control_period=0.05)
        x = np.array([1.0, -2.0, 0.05, 9.0, 0.3])
        np.testing.assert_allclose(comp.predict_array(x), comp.predict(torch.from_numpy(x)).numpy(), atol=1e-12)
        for a in ([0.1, 1.0], [-0.2, -1.5]):
            comp.record(np.array(a))
        np.testing.assert_allclose(comp.predict_array(x), comp.predict(torch.from_numpy(x)).numpy(), atol=1e-12)


def test_guard_maps_infinities_to_zero() -> None:
    state = np.array([0, 0, 0.0, 5.0, 0, np.nan, np.nan])
    assert guard_action(np.array([np.inf, -np.inf]), state, PARAMS) == (0.0, 0.0)


def test_reloaded_model_brings_its_fitted_dead_time_and_keeps_the_actions_in_flight(tmp_path, track) -> None:
    from controller.config import DaemonConfig
    from controller.delay import DelayCompensator
    from controller.runtime import LoadedModel, dead_time_of, delay_compensator_for
    from vehicle_models.bundle import ModelBundle

    config = DaemonConfig(dead_time=0.05)
    fitted = LoadedModel("refit", PARAMS, ModelBundle("refit", PARAMS, fit_metrics={"dead_time_s": 0.1}), None)
    shorter = LoadedModel("old", PARAMS, ModelBundle("old", PARAMS, fit_metrics={"dead_time_s": 0.02}), None)
    assert dead_time_of(config, fitted) == pytest.approx(0.1)
    assert dead_time_of(config, shorter) == pytest.approx(0.05)
    assert delay_compensator_for(DaemonConfig(), shorter.__class__("k", PARAMS, None, None)) is None

    old = DelayCompensator(KinematicBicycle(PARAMS, 0.05), 0.05, 0.05)
    core, _ = make_core(track)
    core.replace_planner(core.planner, old)
    x = np.zeros(7)
    x[:5] = start_state(track, 8.0).numpy()
    core.step(x, 0.0)
    sent = core.step(x, 0.05).action
    new = delay_compensator_for(config, fitted)
    assert new is not None and new.steps == 2
    core.replace_planner(make_core(track)[1], new)
    assert core.delay is new and core.car.delay is not new  # each car keeps its own queue
    assert core.car.delay.steps == 2
    np.testing.assert_allclose(core.car.delay._pending()[-1], sent)  # the action in flight carried over


def test_a_planner_of_another_horizon_starts_cold_and_plans_its_own_length(track) -> None:
    core, _ = make_core(track)
    x = state7(track)
    assert core.step(x, 0.0).plan.shape == (20, 2)
    cost = TrackCost(CostConfig(), track, PARAMS)
    shorter = build_planner(MPPIConfig(num_samples=128, horizon=8, compile=False), KinematicBicycle(PARAMS, 0.05), cost, PARAMS)
    core.replace_planner(shorter)
    out = core.step(x, 0.05)
    assert out.status == "ok" and out.plan.shape == (8, 2)
    again = core.step(x, 0.10)  # warm-started from the 8-step plan
    assert again.status == "ok" and again.plan.shape == (8, 2)


def test_inputs_are_written_in_place_and_outcomes_do_not_alias(track) -> None:
    core, planner = make_core(track)
    x = state7(track)
    first = core.step(x, 0.0)
    kept = first.plan.copy()
    x2 = x.copy()
    x2[3] += 1.0
    second = core.step(x2, 0.05)
    np.testing.assert_array_equal(first.plan, kept)  # the next step did not overwrite it
    assert not np.shares_memory(first.plan, second.plan)
    assert planner.seen[3].item() == x2[3]  # the planner saw the new state through the shared buffer
