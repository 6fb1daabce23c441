"""The friction-circle term: its residual on hand cases, its derivatives, both state layouts.

Torch against the native kernel (costs and iLQR derivatives with the term on) is in
test_native.py; the closed-loop effect is in test_planning_at_the_limit.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from controller.costs import (
    STATE_RESIDUALS,
    CostConfig,
    CostConstants,
    CostWeights,
    Features,
    TrackCost,
    lateral_accel,
)
from controller.track import load_track
from sim.closed_loop import start_state
from vehicle_models import KinematicBicycle, load_params
from vehicle_models.mathops import TORCH
from vehicle_models.params import BicycleParams

G = 9.81
CONSTANTS = CostConstants(grip=1.0 * G, friction_budget=0.8 * G)  # mu 1, margin 0.8: 7.848 m/s^2


def friction(a_lon: float, a_lat: float) -> float:
    zeros = [torch.zeros(())] * 6
    f = Features(*zeros, a_lon=torch.tensor(a_lon, dtype=torch.float64), a_lat=torch.tensor(a_lat, dtype=torch.float64))
    return float(STATE_RESIDUALS["friction"](TORCH, f, CONSTANTS))


@pytest.mark.parametrize("a_lon, a_lat", [(0.0, 0.0), (7.0, 0.0), (0.0, -7.8), (-5.0, 6.0), (3.0, 3.0)])
def test_inside_the_friction_circle_costs_nothing(a_lon: float, a_lat: float) -> None:
    assert friction(a_lon, a_lat) == 0.0


@pytest.mark.parametrize("a_lon, a_lat", [(8.0, 6.0), (-9.0, 0.0), (0.0, 12.0), (-6.0, -7.0)])
def test_outside_it_the_residual_is_the_excess_in_units_of_mu_g(a_lon: float, a_lat: float) -> None:
    want = (math.hypot(a_lon, a_lat) - 0.8 * G) / G
    assert friction(a_lon, a_lat) == pytest.approx(want, abs=1e-6)


def test_lateral_accel_is_v_squared_tan_steer_over_l_or_v_yaw_rate() -> None:
    params = BicycleParams(wheelbase=2.5)  # reference point on the rear axle, gain 1
    x = torch.tensor([[0.0, 0.0, 0.1, 12.0, 0.3]], dtype=torch.float64)
    u = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    got = lateral_accel(TORCH, params, x, u, 5)
    assert float(got) == pytest.approx(12.0**2 * math.tan(0.1) / 2.5, rel=1e-12)
    # a dynamic (7-field) state carries its yaw rate: a_lat = v yaw_rate, whatever the wheel says
    x7 = torch.tensor([[0.0, 0.0, 0.1, 12.0, 0.3, 0.5, 0.05]], dtype=torch.float64)
    assert float(lateral_accel(TORCH, params, x7, u, 7)) == pytest.approx(6.0)


def test_the_cost_charges_braking_and_cornering_past_the_budget() -> None:
    params = load_params("passenger_car")
    track = load_track("random:0")
    weights = CostWeights(lateral=0, heading=0, speed=0, boundary=0, effort=(0, 0), rate=(0, 0), friction=10.0)
    cost = TrackCost(CostConfig(weights=weights), track, params, torch.float64)
    assert cost.term_names == ("friction",)
    model = KinematicBicycle(params, 0.05)
    x0 = start_state(track, 15.0, s=20.0)
    actions = torch.zeros(10, 3, 2, dtype=torch.float64)
    actions[:, 1, 1] = -9.0  # hard braking: 9 > 7.85 m/s^2
    actions[:, 2, 0] = 0.4  # steering in at 15 m/s: a_lat grows past the budget
    states = [x0.expand(3, -1)]
    for t in range(10):
        states.append(model.step(states[-1], actions[t]))
    total = cost.evaluate(torch.stack(states), actions, torch.zeros(2, dtype=torch.float64)).total
    assert float(total[0]) == 0.0
    # straight braking: r = (9 - 0.8 g) / g at each of the 10 steps, the last one 5 times (terminal)
    assert float(total[1]) == pytest.approx(10.0 * (9 + 5) * ((9.0 - 0.8 * G) / G) ** 2, rel=1e-6)
    assert float(total[2]) > 0


def test_gauss_newton_gradient_of_the_term_is_the_cost_gradient() -> None:
    """With only the friction term on, l_z (w.r.t. x_t and u_{t-1}) is dJ/dz exactly (the
    Gauss-Newton gradient 2 w r J is the true one), checked against autograd of the total."""
    params = load_params("passenger_car")
    track = load_track("random:0")
    weights = CostWeights(lateral=0, heading=0, speed=0, boundary=0, effort=(0, 0), rate=(0, 0), friction=10.0)
    cost = TrackCost(CostConfig(weights=weights, friction_margin=0.3), track, params, torch.float64)
    model = KinematicBicycle(params, 0.05)
    g = torch.Generator().manual_seed(4)
    U = torch.rand(12, 2, generator=g, dtype=torch.float64) * torch.tensor([0.8, 12.0]) - torch.tensor([0.4, 8.0])
    X = [start_state(track, 14.0, s=30.0)]
    for t in range(12):
        X.append(model.step(X[-1], U[t]))
    X = torch.stack(X)
    q = cost.quadratize(X, U, torch.zeros(2, dtype=torch.float64))
    Xg, Ug = X.clone().requires_grad_(True), U.clone().requires_grad_(True)
    total = cost.evaluate(Xg.unsqueeze(1), Ug.unsqueeze(1), torch.zeros(2, dtype=torch.float64)).total.sum()
    dX, dU = torch.autograd.grad(total, (Xg, Ug))
    assert float(q.l_z[1:].abs().max()) > 0.1  # the term is active
    torch.testing.assert_close(q.l_z[1:, :5], dX[1:], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(q.l_z[1:, 5:], dU, rtol=1e-9, atol=1e-9)


def test_a_dynamic_state_is_charged_through_its_yaw_rate() -> None:
    """The 7-field layout (State.YAW_RATE): a_lat = v yaw_rate, and iLQR's derivatives
    (generated from the same function for that layout) are the cost's gradient."""
    params = load_params("passenger_car")
    weights = CostWeights(lateral=0, heading=0, speed=0, boundary=0, effort=(0, 0), rate=(0, 0), friction=10.0)
    cost = TrackCost(CostConfig(weights=weights), load_track("circle"), params, torch.float64)
    X = torch.zeros(6, 7, dtype=torch.float64)
    X[:, 3], X[:, 5] = 15.0, torch.linspace(0.2, 0.8, 6, dtype=torch.float64)  # 3 .. 12 m/s^2 lateral
    U = torch.full((5, 2), 2.0, dtype=torch.float64)
    last = torch.zeros(2, dtype=torch.float64)
    q = cost.quadratize(X, U, last)
    Xg, Ug = X.clone().requires_grad_(True), U.clone().requires_grad_(True)
    total = cost.evaluate(Xg.unsqueeze(1), Ug.unsqueeze(1), last).total.sum()
    dX, dU = torch.autograd.grad(total, (Xg, Ug))
    assert float(dX[-1, 5]) > 0 and float(dX[1, 5]) == 0.0  # only past the budget
    torch.testing.assert_close(q.l_z[1:, :7], dX[1:], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(q.l_z[1:, 7:], dU, rtol=1e-9, atol=1e-9)
