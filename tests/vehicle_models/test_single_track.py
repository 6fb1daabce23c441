"""The true car: single-track model against CommonRoad's, tyres, actuator lag and dead time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vehiclemodels.parameters_vehicle2 import parameters_vehicle2
from vehiclemodels.vehicle_dynamics_st import vehicle_dynamics_st

from vehicle_models.single_track import derivative, load_single_track_params, rk4_step
from vehicle_models.true_car import ActuatorConfig, TrueCar
from vehicle_models.tyres import PacejkaTyre

PARAMS = load_single_track_params("passenger_car")
CR = parameters_vehicle2()


def random_states(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.zeros((n, 7))
    x[:, :2] = rng.normal(0, 50, (n, 2))
    x[:, 2] = rng.uniform(-1.1, 1.1, n)
    x[:, 3] = np.where(rng.random(n) < 0.2, rng.uniform(-0.099, 0.099, n), rng.uniform(-5, 45, n))
    x[:, 4] = rng.uniform(-math.pi, math.pi, n)
    x[:, 5] = rng.normal(0, 0.5, n)
    x[:, 6] = rng.normal(0, 0.1, n)
    return x


def test_derivative_equals_commonroad_st() -> None:
    rng = np.random.default_rng(0)
    states = random_states(rng, 500)
    inputs = rng.normal(0, [0.5, 8.0], (500, 2))
    for x, u in zip(states, inputs):
        ours = derivative(PARAMS, x, u)
        theirs = np.array(vehicle_dynamics_st(list(x), list(u), CR))
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_trajectories_equal_commonroad_on_random_inputs() -> None:
    rng = np.random.default_rng(1)
    h = 0.01
    for trial in range(5):
        x_ours = x_cr = np.array([0.0, 0.0, 0.0, rng.uniform(5, 25), 0.0, 0.0, 0.0])
        for k in range(300):
            u = rng.normal(0, [0.3, 3.0]) if k % 10 == 0 else u  # noqa: F821 (held input)
            x_ours = rk4_step(PARAMS, x_ours, u, h)
            f = lambda x: np.array(vehicle_dynamics_st(list(x), list(u), CR))  # noqa: E731
            k1 = f(x_cr)
            k2 = f(x_cr + 0.5 * h * k1)
            k3 = f(x_cr + 0.5 * h * k2)
            k4 = f(x_cr + h * k3)
            x_cr = x_cr + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        np.testing.assert_allclose(x_ours, x_cr, rtol=1e-9, atol=1e-7)


def test_straight_line_keeps_speed_and_heading() -> None:
    x = np.array([0.0, 0.0, 0.0, 15.0, 0.3, 0.0, 0.0])
    for _ in range(100):
        x = rk4_step(PARAMS, x, np.zeros(2), 0.01)
    assert x[3] == pytest.approx(15.0) and x[4] == pytest.approx(0.3)
    assert math.hypot(x[0], x[1]) == pytest.approx(15.0, rel=1e-9)


def test_slow_steady_circle_matches_kinematic_yaw_rate() -> None:
    """At low speed and lateral acceleration the tyres barely slip: yaw rate ~ v cos(b) tan(d) / L."""
    steer, v = 0.1, 3.0
    x = np.array([0.0, 0.0, steer, v, 0.0, 0.0, 0.0])
    for _ in range(2000):
        x = rk4_step(PARAMS, x, np.zeros(2), 0.005)
    beta = math.atan(math.tan(steer) * PARAMS.l_r / PARAMS.wheelbase)
    assert x[5] == pytest.approx(v * math.cos(beta) * math.tan(steer) / PARAMS.wheelbase, rel=0.02)


def test_pacejka_is_linear_for_small_slip_and_saturates() -> None:
    tyre = PacejkaTyre()
    mu = PARAMS.mu
    slope = tyre.B * tyre.C * mu
    assert tyre.force_per_load(1e-4, mu, 0) / 1e-4 == pytest.approx(slope, rel=1e-3)
    assert abs(tyre.force_per_load(0.5, mu, 0)) <= mu + 1e-12
    assert tyre.force_per_load(0.5, mu, 0) < slope * 0.5 / 3


def test_dead_time_delays_the_command() -> None:
    car = TrueCar(PARAMS, ActuatorConfig(lag_steer_rate=0, lag_accel=0, dead_time=0.1, substep=0.001))
    car.reset(np.array([0, 0, 0, 10.0, 0, 0, 0]))
    speeds = []
    car.step(np.array([0.0, 2.0]), 0.05)
    speeds.append(car.state[3])
    car.step(np.array([0.0, 2.0]), 0.05)
    speeds.append(car.state[3])
    car.step(np.array([0.0, 2.0]), 0.05)
    speeds.append(car.state[3])
    assert speeds[0] == pytest.approx(10.0) and speeds[1] == pytest.approx(10.0, abs=1e-9)
    assert speeds[2] == pytest.approx(10.1, rel=1e-6)


def test_first_order_lag_reaches_63_percent_after_one_time_constant() -> None:
    car = TrueCar(PARAMS, ActuatorConfig(lag_steer_rate=0, lag_accel=0.2, dead_time=0.0, substep=0.001))
    car.reset(np.array([0, 0, 0, 10.0, 0, 0, 0]))
    car.step(np.array([0.0, 1.0]), 0.2)
    assert car.applied[1] == pytest.approx(1 - math.exp(-1), rel=1e-6)
