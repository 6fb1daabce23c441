"""Loss-of-control detection and recovery, and the traction-aware output guard: unit cases,
and the recovery inside a real ControlCore with a real MPPI planner."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.core import ControlCore, guard_action
from controller.costs import CostConfig, TrackCost
from controller.planners.mppi import MPPIConfig
from controller.planners.registry import build_planner
from controller.recovery import (
    REASON_PREFIX,
    RecoveryConfig,
    RecoveryMonitor,
    SafetyConfig,
    loss_of_control,
)
from controller.track import load_track
from controller.traction import (
    AxleModel,
    axle_limited_accel,
    axle_utilisation,
    GRAVITY,
    TractionConfig,
    lateral_accel,
    steer_limit,
    traction_accel_bounds,
)
from sim.closed_loop import start_state
from vehicle_models import KinematicBicycle, load_params
from vehicle_models.layout import State

PARAMS = load_params("passenger_car")
CONFIG = RecoveryConfig()
TRACTION = TractionConfig()


def state(v=10.0, steer=0.0, yaw_rate=0.0, slip=0.0) -> np.ndarray:
    return np.array([0.0, 0.0, steer, v, 0.0, yaw_rate, slip])


def kinematic_yaw_rate(v: float, steer: float) -> float:
    return v * math.tan(steer) / PARAMS.wheelbase


# --- detection ----------------------------------------------------------------------------


def test_driving_on_the_steering_is_in_control() -> None:
    assert loss_of_control(state(), PARAMS, CONFIG) is None
    steer = 0.1
    cornering = state(15.0, steer, kinematic_yaw_rate(15.0, steer), -0.03)
    assert loss_of_control(cornering, PARAMS, CONFIG) is None


def test_slip_or_yaw_rate_against_the_steering_is_lost() -> None:
    assert loss_of_control(state(slip=0.5), PARAMS, CONFIG).startswith(REASON_PREFIX)
    assert "slip" in loss_of_control(state(slip=-2.8), PARAMS, CONFIG)
    # Oversteer: turning at 1 rad/s on straight wheels; countersteer: the other way round.
    assert "yaw rate" in loss_of_control(state(yaw_rate=1.0), PARAMS, CONFIG)
    assert "yaw rate" in loss_of_control(state(steer=0.2, yaw_rate=-0.5), PARAMS, CONFIG)


def test_unmeasured_fields_and_low_speed_never_count_as_lost() -> None:
    assert loss_of_control(state(yaw_rate=np.nan, slip=np.nan), PARAMS, CONFIG) is None
    assert loss_of_control(state(v=1.0, yaw_rate=2.0, slip=1.0), PARAMS, CONFIG) is None
    assert loss_of_control(np.array([0.0, 0.0, 0.0, 10.0, 0.0]), PARAMS, CONFIG) is None


def test_monitor_stays_in_recovery_until_calm_for_exit_steps() -> None:
    monitor = RecoveryMonitor(CONFIG, PARAMS)
    assert monitor.update(state()) is None
    assert monitor.update(state(slip=0.6)) is not None and monitor.entries == 1
    assert monitor.update(state(slip=0.2)) is not None  # between exit and enter: still lost
    for _ in range(CONFIG.exit_steps - 1):
        assert monitor.update(state(slip=0.05)) is not None
    assert monitor.update(state(slip=0.05)) is None and not monitor.active
    assert monitor.update(state(yaw_rate=1.5)) is not None and monitor.entries == 2
    disabled = RecoveryMonitor(RecoveryConfig(enabled=False), PARAMS)
    assert disabled.update(state(slip=1.0)) is None


# --- traction-aware guard -----------------------------------------------------------------


def test_traction_bounds_straight_line() -> None:
    lowest, highest = traction_accel_bounds(5.0, 0.0, PARAMS, TRACTION)
    budget = TRACTION.margin * PARAMS.mu * GRAVITY
    assert lowest == pytest.approx(-budget) and highest == pytest.approx(TRACTION.drive_max)
    # Above v_switch CommonRoad's power limit a_max v_switch / v takes over.
    _, highest = traction_accel_bounds(30.0, 0.0, PARAMS, TRACTION)
    assert highest == pytest.approx(PARAMS.accel_max * PARAMS.v_switch / 30.0)


def test_traction_bounds_share_the_friction_circle_with_cornering() -> None:
    budget = TRACTION.margin * PARAMS.mu * GRAVITY
    v = 15.0
    steer = math.atan(0.6 * budget * PARAMS.wheelbase / v**2)  # a_lat = 0.6 budget
    assert lateral_accel(v, steer, PARAMS) == pytest.approx(0.6 * budget)
    lowest, highest = traction_accel_bounds(v, steer, PARAMS, TRACTION)
    assert lowest == pytest.approx(-0.8 * budget)  # sqrt(1 - 0.36) = 0.8
    assert highest == pytest.approx(min(0.8 * budget, TRACTION.drive_max, PARAMS.accel_max * PARAMS.v_switch / v))
    assert lowest**2 + lateral_accel(v, steer, PARAMS) ** 2 == pytest.approx(budget**2)
    # Beyond the budget laterally: no driving, and braking keeps min_brake.
    lowest, highest = traction_accel_bounds(v, -0.3, PARAMS, TRACTION)
    assert highest == 0.0 and lowest == -TRACTION.min_brake


def test_measured_yaw_rate_counts_when_it_asks_more_than_the_steering() -> None:
    budget = TRACTION.margin * PARAMS.mu * GRAVITY
    v = 20.0
    kinematic_only = traction_accel_bounds(v, 0.0, PARAMS, TRACTION)
    assert kinematic_only[0] == pytest.approx(-budget)
    turning = traction_accel_bounds(v, 0.0, PARAMS, TRACTION, yaw_rate=0.6 * budget / v)
    assert turning[0] == pytest.approx(-0.8 * budget)
    assert traction_accel_bounds(v, 0.0, PARAMS, TRACTION, yaw_rate=math.nan) == kinematic_only
    # In the guard: the yaw rate comes from the state.
    assert guard_action([0.0, -9.0], state(v, yaw_rate=0.6 * budget / v), PARAMS, TRACTION)[1] == pytest.approx(-0.8 * budget)


def test_steering_is_kept_within_the_lateral_budget() -> None:
    budget = TRACTION.margin * PARAMS.mu * GRAVITY
    v = 25.0
    limit = steer_limit(v, PARAMS, TRACTION)
    assert lateral_accel(v, limit, PARAMS) == pytest.approx(budget)
    # Below the limit the wheel may turn, but only so far within the lookahead.
    rate, _ = guard_action([0.4, 0.0], state(v, steer=limit - 0.01), PARAMS, TRACTION)
    assert rate == pytest.approx(0.01 / TRACTION.steer_lookahead)
    # Beyond it the wheel is turned back, whatever the planner asks.
    rate, _ = guard_action([-0.4, 0.0], state(v, steer=-limit - 0.02), PARAMS, TRACTION)
    assert rate == pytest.approx(0.02 / TRACTION.steer_lookahead)
    assert steer_limit(0.0, PARAMS, TRACTION) == PARAMS.steer_max
    assert steer_limit(10.0, PARAMS, TRACTION) > math.atan(PARAMS.wheelbase / 12.0)  # a 12 m bend


def test_guard_applies_the_traction_limits_only_when_given_and_enabled() -> None:
    x = state(5.0)
    assert guard_action([0.0, 11.4], x, PARAMS) == (0.0, 11.4)  # the issue's +11.4 at 5 m/s
    assert guard_action([0.0, 11.4], x, PARAMS, TRACTION) == (0.0, TRACTION.drive_max)
    assert guard_action([0.0, 11.4], x, PARAMS, TractionConfig(enabled=False)) == (0.0, 11.4)
    rate, accel = guard_action([np.nan, np.nan], state(np.nan), PARAMS, TRACTION)
    assert (rate, accel) == (0.0, 0.0)


# --- in the control core ------------------------------------------------------------------


@pytest.fixture(scope="module")
def core():
    track = load_track("circle")
    cost = TrackCost(CostConfig(), track, PARAMS)
    planner = build_planner(
        MPPIConfig(num_samples=128, horizon=20, compile=False),
        KinematicBicycle(PARAMS, 0.05), cost, PARAMS,
    )
    core = ControlCore(planner, PARAMS, 0.05, 0.03, 3, stop_decel=4.0, safety=SafetyConfig())
    return core, track


def test_core_recovers_a_spinning_car_then_plans_again(core) -> None:
    core, track = core
    core.reset()
    x = np.zeros(7)
    x[:5] = start_state(track, 12.0).numpy()
    first = core.step(x, 0.0)
    assert first.status == "ok" and not first.recovery_started
    x[State.YAW_RATE], x[State.SLIP] = 2.5, -1.9  # spinning
    lost = core.step(x, 0.05)
    assert lost.status == "stop" and lost.reason.startswith(REASON_PREFIX)
    assert lost.action == (0.0, -CONFIG.brake) and lost.solve_ms == 0.0 and lost.recovery_started
    again = core.step(x, 0.10)
    assert again.status == "stop" and not again.recovery_started
    x[State.YAW_RATE], x[State.SLIP] = 0.0, 0.0
    x[State.STEER] = 0.0
    outcomes = [core.step(x, 0.15 + 0.05 * k).status for k in range(CONFIG.exit_steps)]
    assert outcomes[:-1] == ["stop"] * (CONFIG.exit_steps - 1) and outcomes[-1] == "ok"
    assert core.car.recovery.entries == 1


# --- per-axle limits (load transfer, brake and drive split) ---------------------------------

VEHICLE_2_AXLES = AxleModel(cog_to_front=1.156, cog_height=0.614, drive_front=0.0, brake_front=0.66)
AXLE_TRACTION = TractionConfig(axles=VEHICLE_2_AXLES, drive_max=20.0)


def test_axle_limits_straight_line_closed_forms() -> None:
    """Straight ahead each axle's limit is linear in a: the rear of a rear-driven car under
    power, a_max = M g l_f / (L - M h); under braking the axle whose share outgrows its load,
    rear b = M g l_f / ((1 - s_b) L + M h), front b = M g l_r / (s_b L - M h)."""
    M = AXLE_TRACTION.margin * PARAMS.mu
    L, l_f, h, s_b = PARAMS.wheelbase, 1.156, 0.614, 0.66
    l_r = L - l_f
    lowest, highest = traction_accel_bounds(5.0, 0.0, PARAMS, AXLE_TRACTION)
    assert highest == pytest.approx(M * GRAVITY * l_f / (L - M * h), rel=1e-5)
    rear = M * GRAVITY * l_f / ((1 - s_b) * L + M * h)
    front = M * GRAVITY * l_r / (s_b * L - M * h)
    assert -lowest == pytest.approx(min(rear, front), rel=1e-5)
    assert rear < front  # vehicle 2: the rear locks first (brake split 66/34, load moves forward)
    # Both below the point-mass circle's margin mu g: the axles, not the car, set the limit.
    assert -lowest < AXLE_TRACTION.margin * PARAMS.mu * GRAVITY
    assert axle_utilisation(lowest, 0.0, VEHICLE_2_AXLES, L) == pytest.approx(M, rel=1e-5)


def test_axle_limits_shrink_with_cornering_and_hand_over_to_min_brake() -> None:
    v = 20.0
    bounds = [traction_accel_bounds(v, steer, PARAMS, AXLE_TRACTION) for steer in (0.0, 0.01, 0.02, 0.03)]
    brakes = [-low for low, _ in bounds]
    assert brakes == sorted(brakes, reverse=True) and brakes[0] > brakes[-1]
    # Cornering alone beyond an axle's share: no drive, braking keeps min_brake.
    lowest, highest = traction_accel_bounds(v, 0.1, PARAMS, AXLE_TRACTION)
    assert highest == 0.0 and lowest == -AXLE_TRACTION.min_brake
    assert axle_limited_accel(100.0, -1.0, VEHICLE_2_AXLES, PARAMS.wheelbase, 0.85, 11.5) == 0.0
    # brake_max caps further (never under min_brake).
    capped = AXLE_TRACTION.model_copy(update={"brake_max": 3.0})
    assert traction_accel_bounds(v, 0.0, PARAMS, capped)[0] == pytest.approx(-3.0)
    assert traction_accel_bounds(v, 0.1, PARAMS, capped)[0] == pytest.approx(-AXLE_TRACTION.min_brake)


def test_axle_limited_braking_keeps_the_std_cars_rear_wheels_off_their_peak() -> None:
    """The real drift car (Pacejka tyres, wheel dynamics): braking straight from 25 m/s at the
    guard's per-axle limit keeps the rear wheels' slip in the tyres' linear range, where lateral
    grip is left; at the point-mass circle's limit they sit at the longitudinal peak (about
    0.1), a little more locks them (vehicle 2's 34 % rear brake share on an axle that braking
    unloads)."""
    from vehicle_models.true_car import TrueCar

    def rear_slip_after(decel: float) -> float:
        car = TrueCar.named("passenger_car", "std")
        car.reset(np.array([0.0, 0.0, 0.0, 25.0, 0.0]))
        worst = 0.0
        for _ in range(20):  # 1 s
            x = car.step(np.array([0.0, -decel]), 0.05)
            _, omega_rear = car.wheel_speeds
            worst = max(worst, 1.0 - omega_rear * 0.344 / max(float(x[State.V]), 1.0))
        return worst

    axle_limit = -traction_accel_bounds(25.0, 0.0, PARAMS, AXLE_TRACTION)[0]
    circle_limit = -traction_accel_bounds(25.0, 0.0, PARAMS, TractionConfig())[0]
    assert rear_slip_after(axle_limit) < 0.06
    assert rear_slip_after(circle_limit) > 0.09
    assert rear_slip_after(circle_limit + 0.7) > 0.9  # locked
