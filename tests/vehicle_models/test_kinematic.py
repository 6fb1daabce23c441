"""Kinematic bicycle: closed-form oracles, the CasADi twin, Jacobians, batching, parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from vehicle_models import (
    Action,
    BicycleParams,
    KinematicBicycle,
    State,
    linearize_autodiff,
    load_params,
    rollout,
)
from vehicle_models.kinematic_casadi import BatchedJacobian, step_function

INTEGRATORS = ("exact", "rk4", "euler")


def _make(integrator: str = "exact", dt: float = 0.05, **overrides: float) -> KinematicBicycle:
    return KinematicBicycle(load_params("passenger_car", **overrides), dt, integrator)


def _random_points(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    x[:, State.STEER] *= 0.3
    x[:, State.V] = x[:, State.V].abs() * 8 + 0.5
    u = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([0.3, 3.0], dtype=torch.float64)
    return x, u


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_straight_line_at_constant_speed(integrator: str) -> None:
    model = _make(integrator)
    yaw = 0.7
    x = torch.tensor([1.0, -2.0, 0.0, 10.0, yaw], dtype=torch.float64)
    states = rollout(model, x, torch.zeros(20, 2, dtype=torch.float64))
    distance = 10.0 * 20 * model.dt
    assert states[-1, State.X].item() == pytest.approx(1.0 + distance * math.cos(yaw), abs=1e-12)
    assert states[-1, State.Y].item() == pytest.approx(-2.0 + distance * math.sin(yaw), abs=1e-12)
    assert states[-1, State.YAW].item() == pytest.approx(yaw, abs=1e-15)


@pytest.mark.parametrize("integrator,tol", [("exact", 1e-11), ("rk4", 1e-7)])
def test_constant_steer_circle(integrator: str, tol: float) -> None:
    """Yaw rate v tan(steer) / L, and the rear axle stays on a circle of radius L / tan(steer)."""
    model = _make(integrator, ref_to_rear=0.0)
    L, v, steer = model.params.wheelbase, 8.0, 0.2
    x0 = torch.tensor([0.0, 0.0, steer, v, 0.0], dtype=torch.float64)
    steps = 200
    states = rollout(model, x0, torch.zeros(steps, 2, dtype=torch.float64))
    yaw_rate = v * math.tan(steer) / L
    assert states[-1, State.YAW].item() == pytest.approx(yaw_rate * steps * model.dt, abs=1e-9)
    radius = L / math.tan(steer)
    centre = torch.tensor([0.0, radius], dtype=torch.float64)
    distances = (states[:, :2] - centre).norm(dim=-1)
    assert (distances - radius).abs().max().item() < tol * radius


def test_reference_point_ahead_of_rear_axle_moves_on_larger_circle() -> None:
    model = _make("exact", ref_to_rear=1.2)
    L, lr, v, steer = model.params.wheelbase, 1.2, 6.0, 0.25
    states = rollout(model, torch.tensor([0.0, 0.0, steer, v, 0.0], dtype=torch.float64), torch.zeros(400, 2, dtype=torch.float64))
    # Radius of the reference point: sqrt(lr^2 + (L / tan(steer))^2); the centre lies
    # perpendicular to its velocity, which points along yaw + beta.
    radius = math.hypot(lr, L / math.tan(steer))
    beta = math.atan(lr / L * math.tan(steer))
    centre = np.array([-radius * math.sin(beta), radius * math.cos(beta)])
    distances = np.linalg.norm(states[:, :2].numpy() - centre, axis=1)
    assert np.abs(distances - radius).max() < 1e-9 * radius


def test_steering_gain_and_offset_change_the_effective_angle() -> None:
    gain, offset = 0.85, 0.02
    model = _make("exact", steer_gain=gain, steer_offset=offset, ref_to_rear=0.0)
    L, v, steer = model.params.wheelbase, 5.0, 0.1
    x = rollout(model, torch.tensor([0.0, 0.0, steer, v, 0.0], dtype=torch.float64), torch.zeros(10, 2, dtype=torch.float64))
    expected = v * math.tan(gain * steer + offset) / L * 10 * model.dt
    assert x[-1, State.YAW].item() == pytest.approx(expected, rel=1e-12)


def test_limits_clip_steer_speed_and_actions() -> None:
    model = _make("exact")
    p = model.params
    x = torch.tensor([0.0, 0.0, p.steer_max - 0.001, 0.05, 0.0], dtype=torch.float64)
    u = torch.tensor([10.0, -100.0], dtype=torch.float64)
    nxt = model.step(x, u)
    assert nxt[State.STEER].item() == pytest.approx(p.steer_max)
    assert nxt[State.V].item() == pytest.approx(p.speed_min)
    u = torch.tensor([0.0, 1000.0], dtype=torch.float64)
    nxt = model.step(torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0], dtype=torch.float64), u)
    assert nxt[State.V].item() == pytest.approx(5.0 + p.accel_max * model.dt)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_torch_equals_casadi_twin(integrator: str) -> None:
    model = _make(integrator, ref_to_rear=0.9, steer_gain=0.9, steer_offset=0.01)
    x, u = _random_points(200)
    x[:5, State.STEER] = model.params.steer_max  # at the limit, pushing outwards
    u[:5, Action.STEER_RATE] = 0.3
    F = step_function(model.params, model.dt, integrator).map(200)
    twin = np.asarray(F(x.numpy().T, u.numpy().T)).T
    assert np.abs(twin - model.step(x, u).numpy()).max() < 1e-9


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_exact_jacobians_match_finite_differences(integrator: str) -> None:
    model = _make(integrator, ref_to_rear=0.9)
    x, u = _random_points(30, seed=1)
    A, B = model.linearize(x, u)
    eps = 1e-6
    for i in range(5):
        d = torch.zeros(5, dtype=torch.float64)
        d[i] = eps
        fd = (model.step(x + d, u) - model.step(x - d, u)) / (2 * eps)
        assert (A[..., i] - fd).abs().max().item() < 1e-6
    for j in range(2):
        d = torch.zeros(2, dtype=torch.float64)
        d[j] = eps
        fd = (model.step(x, u + d) - model.step(x, u - d)) / (2 * eps)
        assert (B[..., j] - fd).abs().max().item() < 1e-6
    A2, B2 = linearize_autodiff(model, x, u)
    assert torch.allclose(A, A2, atol=1e-12) and torch.allclose(B, B2, atol=1e-12)


def test_batch_shapes_and_float32() -> None:
    model = _make("exact")
    x, u = _random_points(24)
    ref = model.step(x, u)
    for shape in [(24,), (4, 6), (2, 3, 4)]:
        out = model.step(x.reshape(*shape, 5), u.reshape(*shape, 2))
        assert out.shape == (*shape, 5)
        assert torch.equal(out.reshape(24, 5), ref)
    assert model.step(x[0], u[0]).shape == (5,)
    out32 = model.step(x.float(), u.float())
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), ref, atol=1e-4)
    A, B = model.linearize(x.float().reshape(4, 6, 5), u.float().reshape(4, 6, 2))
    assert A.shape == (4, 6, 5, 5) and B.shape == (4, 6, 5, 2) and A.dtype == torch.float32


def test_batched_jacobian_reuses_mapped_functions() -> None:
    jac = BatchedJacobian(load_params("f1tenth"), 0.02)
    x, u = _random_points(7)
    A1, _ = jac(x.numpy(), u.numpy())
    A2, _ = jac(x.numpy(), u.numpy())
    assert np.array_equal(A1, A2) and len(jac._mapped) == 1


def test_named_parameter_sets_and_validation() -> None:
    car = load_params("passenger_car")
    assert car.wheelbase == pytest.approx(2.578)
    assert load_params("f1tenth").wheelbase == pytest.approx(0.3302)
    with pytest.raises(FileNotFoundError, match="named sets"):
        load_params("no_such_car")
    with pytest.raises(ValidationError, match="steer_min must be below steer_max"):
        BicycleParams(wheelbase=2.0, steer_min=0.5, steer_max=0.1)
    with pytest.raises(ValidationError):
        BicycleParams(wheelbase=2.0, unknown_key=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        car.wheelbase = 3.0  # frozen
    with pytest.raises(ValueError, match="integrator"):
        KinematicBicycle(car, 0.05, "midpoint")  # type: ignore[arg-type]
