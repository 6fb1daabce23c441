"""The drift model (STD) against CommonRoad's ``vehicle_dynamics_std``, and as the true car.

Oracles: CommonRoad's reference code (``vehiclemodels``, a dev dependency), free rolling at
constant speed, RK4 stability checked by halving the substep.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from vehiclemodels.init_std import init_std
from vehiclemodels.parameters_vehicle2 import parameters_vehicle2
from vehiclemodels.vehicle_dynamics_std import vehicle_dynamics_std

from vehicle_models.drift import (
    DRIFT_STATE_DIM,
    WHEEL_FRONT,
    WHEEL_REAR,
    Drift,
    DriftParams,
    PacejkaCoefficients,
    drift_derivative,
    load_drift_params,
)
from vehicle_models.integrators import rk4
from vehicle_models.layout import State
from vehicle_models.mathops import TORCH
from vehicle_models.true_car import (
    SCALAR,
    ActuatorConfig,
    TrueCar,
    TrueCarConfig,
    advance,
    default_car,
    initial_plant_state,
    load_true_car_config,
)

CR = parameters_vehicle2()


def commonroad_drift_params(cr=CR, **overrides) -> DriftParams:
    """DriftParams from a CommonRoad parameter object, field by field."""
    tyre = PacejkaCoefficients(**{k: getattr(cr.tire, k) for k in PacejkaCoefficients.model_fields})
    fields = {
        "mass": cr.m,
        "yaw_inertia": cr.I_z,
        "l_f": cr.a,
        "l_r": cr.b,
        "cog_height": cr.h_s,
        "wheel_radius": cr.R_w,
        "wheel_inertia": cr.I_y_w,
        "brake_front": cr.T_sb,
        "drive_front": cr.T_se,
        "steer_min": cr.steering.min,
        "steer_max": cr.steering.max,
        "steer_rate_min": cr.steering.v_min,
        "steer_rate_max": cr.steering.v_max,
        "speed_min": cr.longitudinal.v_min,
        "speed_max": cr.longitudinal.v_max,
        "v_switch": cr.longitudinal.v_switch,
        "accel_max": cr.longitudinal.a_max,
        "tyre": tyre,
    }
    return DriftParams(**(fields | overrides))


CR_PARAMS = commonroad_drift_params()
PARAMS = load_drift_params("passenger_car")


def commonroad_f(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    # vehicle_dynamics_std clips the wheel speeds of the list it is given: hand it a copy.
    return np.array(vehicle_dynamics_std(list(x), list(u), CR))


def random_states(rng: np.random.Generator, n: int) -> np.ndarray:
    """Driving, sliding and spinning states; wheels rolling, spinning, locked and (forbidden)
    turning backwards; the edges: the blend to the kinematic model, stops, speed limits."""
    x = np.zeros((n, DRIFT_STATE_DIM))
    x[:, :2] = rng.normal(0, 50, (n, 2))
    x[:, State.STEER] = rng.uniform(-1.1, 1.1, n)
    x[:, State.V] = np.where(rng.random(n) < 0.2, rng.uniform(-0.1, 0.5, n), rng.uniform(0, 51, n))
    x[:, State.YAW] = rng.uniform(-math.pi, math.pi, n)
    x[:, State.YAW_RATE] = rng.normal(0, 1.0, n)
    x[:, State.SLIP] = np.where(rng.random(n) < 0.2, rng.uniform(-3, 3, n), rng.normal(0, 0.2, n))
    rolling = x[:, State.V] * np.cos(x[:, State.SLIP]) / CR.R_w
    x[:, WHEEL_FRONT] = rolling * rng.uniform(0.5, 1.5, n)
    x[:, WHEEL_REAR] = rolling * rng.uniform(0.5, 1.5, n)
    x[::11, WHEEL_REAR] = 0.0  # locked
    x[::13, WHEEL_FRONT] = -1.0  # backwards: no torque balance
    edges = [
        (State.STEER, CR.steering.max),
        (State.STEER, CR.steering.min),
        (State.V, CR.longitudinal.v_max),
        (State.V, CR.longitudinal.v_switch),
        (State.V, 0.1),
        (State.V, 0.2),
        (State.V, 0.0),
    ]
    for k, (field, value) in enumerate(edges):
        x[k * 10 : (k + 1) * 10, field] = value
    return x


def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.normal(0, [0.5, 8.0], (n, 2))
    u[::7] = 0.0  # exact zeros meet the end-stop rule's <= / >=
    return u


def test_passenger_car_drift_section_is_commonroad_vehicle_2_but_for_reversing() -> None:
    assert PARAMS == commonroad_drift_params(speed_min=0.0)
    assert PARAMS.mu == pytest.approx(1.0489)


def test_derivative_equals_commonroad_std_float64() -> None:
    rng = np.random.default_rng(0)
    states, actions = random_states(rng, 700), random_actions(rng, 700)
    ours = drift_derivative(TORCH, CR_PARAMS, torch.from_numpy(states), torch.from_numpy(actions))
    theirs = np.stack([commonroad_f(x, u) for x, u in zip(states, actions)])
    assert np.isfinite(theirs).all()
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-9, atol=1e-9)


def test_scalar_evaluation_equals_torch() -> None:
    rng = np.random.default_rng(1)
    states, actions = random_states(rng, 100), random_actions(rng, 100)
    batched = drift_derivative(TORCH, CR_PARAMS, torch.from_numpy(states), torch.from_numpy(actions))
    for x, u, expected in zip(states, actions, batched.numpy()):
        np.testing.assert_allclose(
            drift_derivative(SCALAR, CR_PARAMS, x, u), expected, rtol=1e-12, atol=1e-12
        )


@pytest.mark.slow  # CommonRoad's pure-Python model, 2400 evaluations
def test_rk4_trajectories_equal_commonroad_on_random_inputs() -> None:
    rng = np.random.default_rng(2)
    trials, steps, hold, h = 2, 600, 50, 0.002
    x0 = np.zeros((trials, DRIFT_STATE_DIM))
    x0[:, State.V] = rng.uniform(8, 25, trials)
    x0 = np.stack([init_std(list(x[:7]), CR) for x in x0])
    actions = np.repeat(rng.normal(0, [0.3, 3.0], (steps // hold, trials, 2)), hold, axis=0)
    model = Drift(CR_PARAMS, h)
    x = torch.from_numpy(x0)
    for u in actions:
        x = model.step(x, torch.from_numpy(u))
    for trial in range(trials):
        x_cr = x0[trial]
        for u in actions[:, trial]:
            x_cr = rk4(commonroad_f, x_cr, u, h)
        assert abs(x_cr[State.YAW]) > 0.01 and np.isfinite(x_cr).all()  # the inputs did steer
        np.testing.assert_allclose(x[trial].numpy(), x_cr, rtol=1e-9, atol=1e-8)


def test_free_rolling_straight_keeps_speed_and_wheel_speeds() -> None:
    car = TrueCar(PARAMS, ActuatorConfig())
    car.reset(np.array([0.0, 0.0, 0.0, 15.0, 0.0, 0.0, 0.0]))
    for _ in range(20):
        state = car.step(np.zeros(2), 0.05)
    assert state[State.V] == pytest.approx(15.0, abs=0.05)
    assert state[State.X] == pytest.approx(15.0, abs=0.05)
    front, rear = car.wheel_speeds
    assert front == pytest.approx(15.0 / PARAMS.wheel_radius, rel=0.01)
    assert rear == pytest.approx(15.0 / PARAMS.wheel_radius, rel=0.01)


def test_the_car_substeps_are_stable_where_10_ms_are_not() -> None:
    """The true car picks its own RK4 substep: halving it changes the result by ~nothing,
    while plain 10 ms RK4 steps throw the wheel modes off (wheels turning backwards)."""
    x0 = np.array([0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0])
    brake_and_steer = np.array([0.3, -8.0])
    runs = []
    for substep in (0.002, 0.001):
        car = TrueCar(PARAMS, ActuatorConfig(substep=substep))
        car.reset(x0)
        for _ in range(10):
            state = car.step(brake_and_steer, 0.05)
        runs.append(state)
    assert np.isfinite(runs[0]).all()
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-3, atol=1e-3)
    model = Drift(PARAMS, 0.01)
    x = torch.tensor(init_std(list(x0), CR), dtype=torch.float64)
    for _ in range(50):
        x = model.step(x, torch.tensor(brake_and_steer))
    coarse = x.numpy()
    assert abs(coarse[State.V] - runs[1][State.V]) > 0.1 or (coarse[WHEEL_FRONT:] < 0).any()


def test_the_tyres_saturate_a_hard_brake_locks_and_a_big_throttle_spins() -> None:
    """What the single-track model cannot do: the rear steps out under power in a corner."""
    car = TrueCar(PARAMS, ActuatorConfig(lag={"steer_rate": 0.0, "accel": 0.05}))
    car.reset(np.array([0.0, 0.0, 0.25, 15.0, 0.0, 0.0, 0.0]))
    for _ in range(10):
        state = car.step(np.array([0.0, -11.5]), 0.05)  # full brakes lock the front
    assert car.wheel_speeds[0] < 0.5 * state[State.V] / PARAMS.wheel_radius
    car.reset(np.array([0.0, 0.0, 0.15, 7.0, 0.0, 0.0, 0.0]))
    max_slip = 0.0
    for _ in range(40):
        state = car.step(np.array([0.0, 11.5]), 0.05)
        max_slip = max(max_slip, abs(state[State.SLIP]))
    assert max_slip > math.radians(20)


def test_batched_torch_core_equals_true_car() -> None:
    rng = np.random.default_rng(7)
    config = TrueCarConfig(vehicle=PARAMS, actuators=ActuatorConfig(lag=0.05, dead_time=0.02))
    cars = [TrueCar.from_config(config) for _ in range(3)]
    x0 = np.zeros((3, 7))
    x0[:, State.V] = [12.0, 15.0, 20.0]  # one substep for all: the batch shares one clock
    for car, x in zip(cars, x0):
        car.reset(x)
    plant = initial_plant_state(torch.from_numpy(np.stack([c.plant.vehicle for c in cars])))
    for _ in range(4):
        u = rng.normal(0, [0.3, 2.0], (3, 2))
        plant = advance(TORCH, config, plant, torch.from_numpy(u), 0.05)
        for car, action in zip(cars, u):
            car.step(action, 0.05)
    np.testing.assert_allclose(
        plant.vehicle.numpy(), np.stack([c.plant.vehicle for c in cars]), rtol=1e-9, atol=1e-9
    )


def test_car_choice_overrides_and_reported_state() -> None:
    config = load_true_car_config("passenger_car", "std", mass=1200.0, dead_time=0.04)
    assert config.car == "std" and config.vehicle.mass == 1200.0
    assert config.actuators.dead_time.per_input() == (0.04, 0.04)
    assert load_true_car_config("passenger_car").car == "st"
    assert default_car("passenger_car") in ("st", "std")
    with pytest.raises(ValueError, match="unknown true-car parameter.*of std"):
        load_true_car_config("passenger_car", "std", stiffness_front=20.0)
    with pytest.raises(ValueError, match="unknown car"):
        load_true_car_config("passenger_car", "mb3")
    car = TrueCar.from_config(config)
    car.reset(torch.tensor([0.0, 0.0, 0.0, 8.0, 0.0]))
    assert car.plant.vehicle.shape == (9,) and car.state.shape == (7,)
    out = car.step(torch.tensor([0.0, 1.0], dtype=torch.float32), 0.05)
    assert isinstance(out, torch.Tensor) and out.shape == (7,)


def test_mu_override_scales_both_peaks_of_the_drift_tyres() -> None:
    from vehicle_models.drift import load_drift_params

    base = load_drift_params("passenger_car")
    wet = load_drift_params("passenger_car", mu=0.5)
    assert wet.mu == 0.5
    assert wet.tyre.p_dx1 / base.tyre.p_dx1 == pytest.approx(0.5 / base.tyre.p_dy1)
    assert wet.tyre.p_ky1 == base.tyre.p_ky1  # shapes unchanged
    with pytest.raises(ValueError, match="mu must be positive"):
        load_drift_params("passenger_car", mu=0.0)
