"""The true car: single-track model against CommonRoad's, tyres, actuator lag and dead time.

Oracles: CommonRoad's reference code (``vehiclemodels``, a dev dependency), the project's
kinematic bicycle, closed-form responses of a dead time and a first-order lag.
"""

from __future__ import annotations

import math

import casadi as ca
import numpy as np
import pytest
import torch
from vehiclemodels.parameters_vehicle2 import parameters_vehicle2
from vehiclemodels.vehicle_dynamics_st import vehicle_dynamics_st

from vehicle_models.integrators import rk4
from vehicle_models.kinematic import kinematic_derivative
from vehicle_models.layout import Action, State
from vehicle_models.mathops import CASADI, TORCH
from vehicle_models.params import BicycleParams
from vehicle_models.single_track import (
    SingleTrack,
    SingleTrackParams,
    load_single_track_params,
    single_track_derivative,
)
from vehicle_models.true_car import (
    SCALAR,
    ActuatorConfig,
    TrueCar,
    TrueCarConfig,
    advance,
    initial_plant_state,
    load_true_car_config,
)
from vehicle_models.tyres import LinearTyre, PacejkaTyre

CR = parameters_vehicle2()
PARAMS = load_single_track_params("passenger_car")


def commonroad_params(cr=CR, **overrides) -> SingleTrackParams:
    """SingleTrackParams from a CommonRoad parameter object, mapped as vehicle_dynamics_st does."""
    stiffness = -cr.tire.p_ky1 / cr.tire.p_dy1
    fields = {
        "mass": cr.m,
        "yaw_inertia": cr.I_z,
        "l_f": cr.a,
        "l_r": cr.b,
        "cog_height": cr.h_s,
        "mu": cr.tire.p_dy1,
        "stiffness_front": stiffness,
        "stiffness_rear": stiffness,
        "steer_min": cr.steering.min,
        "steer_max": cr.steering.max,
        "steer_rate_min": cr.steering.v_min,
        "steer_rate_max": cr.steering.v_max,
        "speed_min": cr.longitudinal.v_min,
        "speed_max": cr.longitudinal.v_max,
        "v_switch": cr.longitudinal.v_switch,
        "accel_max": cr.longitudinal.a_max,
        "tyre": LinearTyre(),
    }
    return SingleTrackParams(**(fields | overrides))


CR_PARAMS = commonroad_params()


def commonroad_f(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.array(vehicle_dynamics_st(list(x), list(u), CR))


def random_states(rng: np.random.Generator, n: int) -> np.ndarray:
    """Driving states plus the edge cases: low speed, steering stops, speed limits, v_switch."""
    x = np.zeros((n, 7))
    x[:, :2] = rng.normal(0, 50, (n, 2))
    x[:, State.STEER] = rng.uniform(-1.1, 1.1, n)
    x[:, State.V] = np.where(
        rng.random(n) < 0.2, rng.uniform(-0.099, 0.099, n), rng.uniform(-14, 51, n)
    )
    x[:, State.YAW] = rng.uniform(-math.pi, math.pi, n)
    x[:, State.YAW_RATE] = rng.normal(0, 0.5, n)
    x[:, State.SLIP] = rng.normal(0, 0.1, n)
    edges = [
        (State.STEER, CR.steering.max),
        (State.STEER, CR.steering.min),
        (State.V, CR.longitudinal.v_max),
        (State.V, CR.longitudinal.v_min),
        (State.V, CR.longitudinal.v_switch),
        (State.V, 0.1),
        (State.V, -0.1),
        (State.V, 0.0),
    ]
    for k, (field, value) in enumerate(edges):
        x[k * 10 : (k + 1) * 10, field] = value
    return x


def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.normal(0, [0.5, 8.0], (n, 2))
    u[::7] = 0.0  # exact zeros meet the end-stop rule's <= / >=
    return u


# --- against CommonRoad -------------------------------------------------------------------


def test_passenger_car_is_commonroad_vehicle_2_but_for_reversing() -> None:
    expected = commonroad_params(speed_min=0.0)  # the ST model is unstable in reverse
    assert PARAMS == expected
    assert PARAMS.wheelbase == pytest.approx(1.156 + 1.422, abs=1e-3)


def test_derivative_equals_commonroad_st_float64() -> None:
    rng = np.random.default_rng(0)
    states, actions = random_states(rng, 600), random_actions(rng, 600)
    ours = SingleTrack(CR_PARAMS, 0.01).derivative(
        torch.from_numpy(states), torch.from_numpy(actions)
    )
    theirs = np.stack([commonroad_f(x, u) for x, u in zip(states, actions)])
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-9, atol=1e-9)


def test_scalar_and_casadi_evaluations_equal_torch() -> None:
    rng = np.random.default_rng(1)
    states, actions = random_states(rng, 80), random_actions(rng, 80)
    for params in (CR_PARAMS, CR_PARAMS.model_copy(update={"tyre": PacejkaTyre()})):
        batched = single_track_derivative(
            TORCH, params, torch.from_numpy(states), torch.from_numpy(actions)
        )
        xs, us = ca.SX.sym("x", 7), ca.SX.sym("u", 2)
        symbolic = ca.Function("f", [xs, us], [single_track_derivative(CASADI, params, xs, us)])
        for x, u, expected in zip(states, actions, batched.numpy()):
            np.testing.assert_allclose(
                single_track_derivative(SCALAR, params, x, u), expected, rtol=1e-12, atol=1e-12
            )
            np.testing.assert_allclose(
                np.array(symbolic(x, u)).ravel(), expected, rtol=1e-12, atol=1e-12
            )


def test_rk4_trajectories_equal_commonroad_on_random_inputs() -> None:
    rng = np.random.default_rng(2)
    trials, steps, hold, h = 4, 300, 10, 0.01
    x0 = np.zeros((trials, 7))
    x0[:, State.V] = rng.uniform(8, 25, trials)
    actions = np.repeat(rng.normal(0, [0.3, 2.0], (steps // hold, trials, 2)), hold, axis=0)
    model = SingleTrack(CR_PARAMS, h)
    x = torch.from_numpy(x0)
    for u in actions:
        x = model.step(x, torch.from_numpy(u))
    for trial in range(trials):
        x_cr = x0[trial]
        for u in actions[:, trial]:
            x_cr = rk4(commonroad_f, x_cr, u, h)
        assert abs(x_cr[State.YAW]) > 0.01 and np.isfinite(x_cr).all()  # the inputs did steer
        np.testing.assert_allclose(x[trial].numpy(), x_cr, rtol=1e-9, atol=1e-8)


# --- the torch model ----------------------------------------------------------------------


def test_batched_any_shape_and_float32() -> None:
    rng = np.random.default_rng(3)
    states, actions = random_states(rng, 24), random_actions(rng, 24)
    states[:, State.V] = rng.uniform(
        2, 30, 24
    )  # away from the 0.1 m/s switch, where float32 may flip
    model = SingleTrack(PARAMS, 0.01)
    x64, u64 = torch.from_numpy(states), torch.from_numpy(actions)
    flat = model.step(x64, u64)
    shaped = model.step(x64.reshape(2, 3, 4, 7), u64.reshape(2, 3, 4, 2))
    assert shaped.shape == (2, 3, 4, 7)
    torch.testing.assert_close(shaped.reshape(24, 7), flat, rtol=1e-12, atol=1e-12)
    single = model.step(x64[5], u64[5])
    torch.testing.assert_close(single, flat[5], rtol=1e-12, atol=1e-12)
    x32 = model.step(x64.float(), u64.float())
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32.double(), flat, rtol=1e-4, atol=1e-3)


def test_linearize_matches_finite_differences() -> None:
    model = SingleTrack(PARAMS, 0.01)
    x = torch.tensor([1.0, 2.0, 0.05, 12.0, 0.3, 0.1, 0.01], dtype=torch.float64)
    u = torch.tensor([0.1, 1.0], dtype=torch.float64)
    A, B = model.linearize(x, u)
    eps = 1e-6
    A_fd = torch.stack(
        [
            (model.step(x + eps * e, u) - model.step(x - eps * e, u)) / (2 * eps)
            for e in torch.eye(7, dtype=x.dtype)
        ],
        -1,
    )
    B_fd = torch.stack(
        [
            (model.step(x, u + eps * e) - model.step(x, u - eps * e)) / (2 * eps)
            for e in torch.eye(2, dtype=x.dtype)
        ],
        -1,
    )
    torch.testing.assert_close(A, A_fd, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(B, B_fd, rtol=1e-6, atol=1e-7)


def test_gradients_are_finite_at_standstill() -> None:
    x = torch.tensor([0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    single_track_derivative(
        TORCH, PARAMS, x, torch.tensor([0.1, 1.0], dtype=torch.float64)
    ).sum().backward()
    assert torch.isfinite(x.grad).all()


# --- closed-form checks -------------------------------------------------------------------


def test_straight_line_keeps_speed_and_heading() -> None:
    model = SingleTrack(PARAMS, 0.01)
    x = torch.tensor([0.0, 0.0, 0.0, 15.0, 0.3, 0.0, 0.0], dtype=torch.float64)
    for _ in range(100):
        x = model.step(x, torch.zeros(2, dtype=torch.float64))
    expected = torch.tensor(
        [15 * math.cos(0.3), 15 * math.sin(0.3), 0, 15, 0.3, 0, 0], dtype=torch.float64
    )
    torch.testing.assert_close(x, expected, rtol=1e-12, atol=1e-12)


def test_below_the_switch_speed_the_model_is_the_kinematic_bicycle_at_the_cog() -> None:
    kinematic = BicycleParams(
        wheelbase=PARAMS.wheelbase,
        ref_to_rear=PARAMS.l_r,
        steer_min=PARAMS.steer_min,
        steer_max=PARAMS.steer_max,
        speed_min=PARAMS.speed_min,
        accel_min=-PARAMS.accel_max,
        accel_max=PARAMS.accel_max,
    )
    rng = np.random.default_rng(4)
    x = torch.from_numpy(random_states(rng, 50))
    x[:, State.V] = torch.from_numpy(rng.uniform(0.0, 0.099, 50))
    x[:, State.STEER] = torch.from_numpy(rng.uniform(-1.0, 1.0, 50))
    u = torch.from_numpy(rng.normal(0, [0.2, 2.0], (50, 2)))
    ours = single_track_derivative(TORCH, PARAMS, x, u)
    theirs = kinematic_derivative(TORCH, kinematic, x[:, :5], u)
    torch.testing.assert_close(ours[:, :5], theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tyre", [LinearTyre(), PacejkaTyre()], ids=["linear", "pacejka"])
def test_slow_steady_circle_has_the_kinematic_yaw_rate(tyre) -> None:
    """At 3 m/s the tyres barely slip: yaw rate = v cos(beta) tan(steer) / L."""
    params = PARAMS.model_copy(update={"tyre": tyre})
    steer, v = 0.1, 3.0
    model = SingleTrack(params, 0.005)
    x = torch.tensor([0.0, 0.0, steer, v, 0.0, 0.0, 0.0], dtype=torch.float64)
    for _ in range(300):
        x = model.step(x, torch.zeros(2, dtype=torch.float64))
    beta = math.atan(math.tan(steer) * params.l_r / params.wheelbase)
    assert float(x[State.YAW_RATE]) == pytest.approx(
        v * math.cos(beta) * math.tan(steer) / params.wheelbase, rel=2e-3
    )
    assert float(x[State.SLIP]) == pytest.approx(beta, rel=0.05)


# --- tyres --------------------------------------------------------------------------------


def test_pacejka_is_linear_at_small_slip_and_saturates() -> None:
    pacejka = PacejkaTyre()
    assert pacejka.cornering_stiffness() == pytest.approx(PARAMS.stiffness_front, rel=1e-4)
    mu, load = PARAMS.mu, torch.tensor(5000.0, dtype=torch.float64)
    small = torch.linspace(-2e-3, 2e-3, 41, dtype=torch.float64)
    linear = LinearTyre().lateral_force(small, load, mu, pacejka.cornering_stiffness())
    torch.testing.assert_close(pacejka.lateral_force(small, load, mu), linear, rtol=1e-3, atol=1e-9)
    wide = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    force = pacejka.lateral_force(wide, load, mu)
    assert float(force.abs().max()) <= mu * float(load) * (1 + 1e-12)
    assert float(force.abs().max()) > 0.95 * mu * float(load)  # reaches about its peak
    torch.testing.assert_close(force, -pacejka.lateral_force(-wide, load, mu))  # odd
    assert float(pacejka.lateral_force(torch.tensor(0.3), load, mu)) < 0.5 * float(
        LinearTyre().lateral_force(torch.tensor(0.3), load, mu, pacejka.cornering_stiffness())
    )


def test_pacejka_model_close_to_linear_in_gentle_driving() -> None:
    rng = np.random.default_rng(5)
    x = torch.from_numpy(random_states(rng, 100))
    x[:, State.V] = torch.from_numpy(rng.uniform(5, 30, 100))
    x[:, State.STEER] = torch.from_numpy(rng.uniform(-0.004, 0.004, 100))
    x[:, State.YAW_RATE] = torch.from_numpy(rng.uniform(-0.004, 0.004, 100))
    x[:, State.SLIP] = torch.from_numpy(rng.uniform(-0.001, 0.001, 100))
    u = torch.from_numpy(rng.normal(0, [0.1, 1.0], (100, 2)))
    matched = PacejkaTyre(B=PARAMS.stiffness_front / PacejkaTyre().C)  # slope mu C_S at zero
    linear = single_track_derivative(TORCH, PARAMS, x, u)
    pacejka = single_track_derivative(TORCH, PARAMS.model_copy(update={"tyre": matched}), x, u)
    # Yaw acceleration is a difference of axle moments: compare with the moments' size.
    moment_scale = linear[:, State.YAW_RATE].abs() + 0.1 * float(
        linear[:, State.YAW_RATE].abs().max()
    )
    assert ((pacejka - linear)[:, State.YAW_RATE].abs() <= 0.02 * moment_scale).all()
    torch.testing.assert_close(pacejka[:, State.SLIP], linear[:, State.SLIP], rtol=0.02, atol=1e-3)
    torch.testing.assert_close(pacejka[:, :5], linear[:, :5], rtol=0, atol=0)


def test_named_tyre_and_overrides() -> None:
    assert load_single_track_params("passenger_car", tyre="pacejka").tyre == PacejkaTyre()
    inline = load_single_track_params("passenger_car", tyre={"kind": "pacejka", "B": 10.0})
    assert inline.tyre == PacejkaTyre(B=10.0)
    with pytest.raises(ValueError, match="unknown tyre"):
        load_single_track_params("passenger_car", tyre="slick")
    config = load_true_car_config("passenger_car", mu=0.8, dead_time=0.04)
    assert config.vehicle.mu == 0.8 and config.actuators.dead_time.per_input() == (0.04, 0.04)
    with pytest.raises(ValueError, match="unknown true-car parameter"):
        load_true_car_config("passenger_car", muu=0.8)
    with pytest.raises(ValueError):
        SingleTrackParams(**(PARAMS.model_dump() | {"wings": 2}))


# --- the true car: dead time and lag ------------------------------------------------------


def ideal_car(**actuators) -> TrueCar:
    car = TrueCar(PARAMS, ActuatorConfig(**({"substep": 0.001} | actuators)))
    car.reset(np.array([0, 0, 0, 10.0, 0, 0, 0]))
    return car


def test_dead_time_delays_the_command_exactly() -> None:
    car = ideal_car(dead_time=0.1)
    speeds = [car.step(np.array([0.0, 2.0]), 0.05)[State.V] for _ in range(3)]
    assert speeds[:2] == [10.0, 10.0]  # the command is still in flight
    assert speeds[2] == pytest.approx(10.1, abs=1e-12)
    # A dead time that is not a multiple of the period or substep splits the period there.
    car = ideal_car(dead_time=0.03)
    assert car.step(np.array([0.0, 2.0]), 0.05)[State.V] == pytest.approx(10.04, abs=1e-12)
    assert len(car.plant.commands) <= 2


def test_dead_time_per_input() -> None:
    car = ideal_car(dead_time={"steer_rate": 0.0, "accel": 0.1})
    state = car.step(np.array([0.2, 2.0]), 0.05)
    assert state[State.STEER] == pytest.approx(0.01, abs=1e-12) and state[State.V] == 10.0


def test_first_order_lag_reaches_63_percent_after_one_time_constant() -> None:
    tau = 0.2
    car = ideal_car(lag={"steer_rate": 0.1, "accel": tau})
    state = car.step(np.array([0.2, 1.0]), tau)
    assert car.applied[Action.ACCEL] == pytest.approx(1 - math.exp(-1), rel=1e-12)
    # Speed is the integral of the lagged acceleration: tau (1 - (1 - e^-1)) = tau e^-1.
    assert state[State.V] == pytest.approx(10.0 + tau * math.exp(-1), abs=1e-10)
    # 0.2 rad/s through a 0.1 s lag for 0.2 s: 0.2 (0.2 - 0.1 (1 - e^-2)).
    assert state[State.STEER] == pytest.approx(0.2 * (0.2 - 0.1 * (1 - math.exp(-2))), abs=1e-10)


def test_ideal_actuators_give_the_rk4_model() -> None:
    rng = np.random.default_rng(6)
    car = ideal_car(substep=0.005)
    model = SingleTrack(PARAMS, 0.005)
    x = torch.tensor(car.state)
    for _ in range(20):
        u = rng.normal(0, [0.3, 2.0])
        state = car.step(u, 0.05)
        for _ in range(10):
            x = model.step(x, torch.from_numpy(u))
        np.testing.assert_allclose(state, x.numpy(), rtol=1e-10, atol=1e-10)


def test_batched_torch_core_equals_true_car() -> None:
    rng = np.random.default_rng(7)
    config = TrueCarConfig(vehicle=PARAMS, actuators=ActuatorConfig(lag=0.05, dead_time=0.02))
    x0 = np.zeros((3, 7))
    x0[:, State.V] = [5.0, 12.0, 20.0]
    plant = initial_plant_state(torch.from_numpy(x0))
    cars = [TrueCar.from_config(config) for _ in range(3)]
    for car, x in zip(cars, x0):
        car.reset(x)
    for _ in range(8):
        u = rng.normal(0, [0.3, 2.0], (3, 2))
        plant = advance(TORCH, config, plant, torch.from_numpy(u), 0.05)
        for car, action in zip(cars, u):
            car.step(action, 0.05)
    np.testing.assert_allclose(
        plant.vehicle.numpy(), np.stack([c.state for c in cars]), rtol=1e-10, atol=1e-10
    )


def test_numpy_and_torch_in_and_out_and_kinematic_reset() -> None:
    car = TrueCar.named("passenger_car")
    car.reset(torch.tensor([0.0, 0.0, 0.0, 8.0, 0.0]))
    assert car.state.shape == (7,) and car.time == 0.0
    out = car.step(torch.tensor([0.0, 1.0], dtype=torch.float32), 0.05)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (7,)
    assert isinstance(car.step(np.zeros(2), 0.05), np.ndarray)
    assert car.time == pytest.approx(0.1)
    car.reset(np.array([0.0, 0.0, 0.0, 8.0, 0.0, np.nan, np.nan]))  # unmeasured yaw rate, slip
    assert car.state[State.YAW_RATE] == 0.0
    with pytest.raises(ValueError):
        car.reset(np.array([np.nan, 0.0, 0.0, 8.0, 0.0]))


def test_braking_to_a_stop_and_steering_at_standstill_stay_finite() -> None:
    car = TrueCar.named("passenger_car")
    car.reset(np.array([0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]))
    for _ in range(30):
        state = car.step(np.array([0.3, -11.0]), 0.05)
    assert np.isfinite(state).all() and abs(state[State.V]) < 0.01
    for _ in range(20):
        # Pull away with the wheels turned; the lagged brake holds the car for ~0.3 s first.
        state = car.step(np.array([0.3, 0.5]), 0.05)
    assert np.isfinite(state).all() and 0.1 < state[State.V] < 0.5
