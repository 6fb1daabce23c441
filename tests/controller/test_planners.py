"""Planners: determinism, compiled == eager, cost derivatives, delay compensation, and laps.

Lap tests are oracles on behaviour: at 10 m/s the kinematic car, driven by each planner on its
own kinematic model, completes a full lap with mean |lateral offset| under 0.3 m and never
leaves the track, on a generated track and on a real one (Zandvoort, 4.3 km).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from controller.costs import CostConfig, CostWeights, TrackCost
from controller.delay import DelayCompensator
from controller.planners.base import shift_plan
from controller.planners.combined import CombinedConfig
from controller.planners.ilqr import ILQRConfig
from controller.planners.mppi import MPPIConfig
from controller.planners.registry import build_planner
from controller.track import load_track
from tests.shared_data import shared_track
from sim.closed_loop import FunctionPlant, make_core, run_closed_loop, start_state
from vehicle_models import KinematicBicycle, State, load_params
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS, SemiParametricModel

PARAMS = load_params("passenger_car")


def semi_model(ensemble_size: int = 1, dtype: torch.dtype = torch.float32) -> SemiParametricModel:
    residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(ensemble_size=ensemble_size), seed=1)
    with torch.no_grad():
        residual.weights[-1].mul_(20)  # a residual that changes predictions visibly
    return SemiParametricModel(KinematicBicycle(PARAMS, 0.05), residual, dtype=dtype)


@pytest.fixture(scope="module")
def track():
    return load_track("random:0")


def kinematic_planner(config, track, dtype=torch.float32, cost_config=CostConfig()):
    cost = TrackCost(cost_config, track, PARAMS, dtype)
    return build_planner(config, KinematicBicycle(PARAMS, config.dt), cost, PARAMS, dtype)


def test_same_seed_same_plan_and_compiled_equals_eager(track) -> None:
    x0 = start_state(track, 9.0, s=20.0)
    x0[State.Y] += 0.7
    def config(**kw) -> MPPIConfig:  # the torch backend: eager and compiled
        return MPPIConfig(num_samples=256, horizon=20, backend="torch", **kw)

    eager = kinematic_planner(config(compile=False, seed=4), track)
    again = kinematic_planner(config(compile=False, seed=4), track)
    compiled = kinematic_planner(config(compile=True, seed=4), track)
    other = kinematic_planner(config(compile=False, seed=5), track)
    a, b, c, d = (p.plan(x0) for p in (eager, again, compiled, other))
    assert torch.equal(a.actions, b.actions)
    torch.testing.assert_close(a.actions, c.actions, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(a.actions, d.actions)
    assert a.cost == pytest.approx(sum(a.cost_terms.values()), rel=1e-5)
    assert set(a.cost_terms) == {"lateral", "heading", "speed", "boundary", "effort", "rate"}


def test_mppi_keeps_the_previous_plan_as_a_sample_and_respects_limits(track) -> None:
    planner = kinematic_planner(MPPIConfig(num_samples=64, horizon=20, compile=False), track)
    result = planner.plan(start_state(track, 10.0), torch.full((20, 2), 100.0))
    low, high = torch.tensor(PARAMS.action_low), torch.tensor(PARAMS.action_high)
    assert (result.actions >= low - 1e-6).all() and (result.actions <= high + 1e-6).all()
    # A plan that is already optimal-ish survives: its cost cannot get worse than the warm start.
    x0 = start_state(track, 10.0)
    first = planner.plan(x0)
    second = planner.plan(x0, first.actions)
    assert second.diagnostics["best_sample_cost"] <= first.cost * (1 + 1e-5)


def test_cost_gradient_matches_finite_differences(track) -> None:
    cost = TrackCost(
        CostConfig(weights=CostWeights(progress=0.5)), track, PARAMS, torch.float64
    )
    model = KinematicBicycle(PARAMS, 0.05)
    H = 8
    g = torch.Generator().manual_seed(0)
    actions = (torch.rand(H, 2, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([0.4, 4.0])
    x0 = start_state(track, 9.0, s=30.0)
    x0[State.Y] += 1.5  # off centre, so the boundary and lateral terms are active
    states = [x0]
    for t in range(H):
        states.append(model.step(states[-1], actions[t]))
    states = torch.stack(states)
    last = torch.tensor([0.05, 0.3], dtype=torch.float64)
    q = cost.quadratize(states, actions, last)

    def total(s: torch.Tensor, a: torch.Tensor) -> float:
        return float(cost.evaluate(s.unsqueeze(1), a.unsqueeze(1), last).total[0])

    # To 1 % of the gradient's norm: quadratize uses the smooth centre line's geometry
    # (normal from the interpolated heading, ds/dp = t / (1 - kappa e_y)) where evaluate
    # projects onto the 1 m polyline (half a segment's turn, ~0.005 rad, apart here);
    # a wrong term, factor or sign is off by far more.
    eps = 1e-6

    def close(analytic: torch.Tensor, fd: torch.Tensor) -> bool:
        return float((analytic - fd).norm()) <= 1e-2 * float(fd.norm()) + 1e-6

    for t in (1, 4, H):
        fd = torch.zeros(5, dtype=torch.float64)
        for i in range(5):
            d = torch.zeros_like(states)
            d[t, i] = eps
            fd[i] = (total(states + d, actions) - total(states - d, actions)) / (2 * eps)
        assert close(q.l_z[t, :5], fd), (t, q.l_z[t, :5], fd)
        assert fd.norm() > 1e-3
    for t in (0, 3, H - 1):
        fd = torch.zeros(2, dtype=torch.float64)
        for j in range(2):
            d = torch.zeros_like(actions)
            d[t, j] = eps
            fd[j] = (total(states, actions + d) - total(states, actions - d)) / (2 * eps)
        # l_u holds u_t's own terms; the rate term's share through u_t as the next step's
        # "previous action" sits in l_z[t + 1] (augmented state z = (x, u_prev)).
        analytic = q.l_u[t] + q.l_z[t + 1, 5:]
        assert close(analytic, fd), (t, analytic, fd)


def test_shift_plan_interpolates_and_holds_the_last_action() -> None:
    plan = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    shifted = shift_plan(plan, dt=0.1, elapsed=0.15)
    torch.testing.assert_close(shifted[0], torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(shifted[-1], plan[-1])
    torch.testing.assert_close(shift_plan(plan, 0.1, 0.0), plan)


def test_delay_compensation_predicts_through_actions_in_flight() -> None:
    model = KinematicBicycle(PARAMS, 0.05)
    comp = DelayCompensator(model, dead_time=0.1, control_period=0.05)
    x = torch.tensor([0.0, 0.0, 0.0, 10.0, 0.0], dtype=torch.float64)
    assert torch.equal(comp.predict(x), model.step(model.step(x, torch.zeros(2)), torch.zeros(2)))
    a1, a2, a3 = (torch.tensor([0.1 * k, 1.0], dtype=torch.float64) for k in (1, 2, 3))
    for a in (a1, a2, a3):
        comp.record(a)
    torch.testing.assert_close(comp.predict(x), model.step(model.step(x, a2), a3))
    comp.reset()
    assert torch.equal(comp.predict(x), model.step(model.step(x, torch.zeros(2)), torch.zeros(2)))
    assert torch.equal(DelayCompensator(model, 0.0, 0.05).predict(x), x)


@pytest.mark.parametrize(
    "config",
    [
        MPPIConfig(num_samples=128, horizon=10, compile=False),
        ILQRConfig(horizon=10, compile=False),
        CombinedConfig(
            mppi=MPPIConfig(num_samples=128, horizon=10, compile=False),
            ilqr=ILQRConfig(horizon=10, compile=False),
        ),
    ],
    ids=["mppi", "ilqr", "mppi+ilqr"],
)
def test_planners_accept_the_semi_parametric_model_unchanged(track, config) -> None:
    model = semi_model(ensemble_size=5 if config.kind == "mppi" else 1)
    cost = TrackCost(CostConfig(), track, PARAMS)
    planner = build_planner(config, model, cost, PARAMS)
    result = planner.plan(start_state(track, 10.0))
    assert result.actions.shape == (10, 2) and result.states.shape == (11, 5)
    assert torch.isfinite(result.actions).all() and np.isfinite(result.cost)
    assert result.planner == config.kind
    if config.kind == "ilqr":
        assert result.feedback_gains is not None and result.feedback_gains.shape == (10, 2, 7)


def test_disagreement_penalty_needs_an_ensemble_and_is_refused_by_ilqr(track) -> None:
    cost = TrackCost(CostConfig(weights=CostWeights(disagreement=1.0)), track, PARAMS)
    with pytest.raises(ValueError, match="disagreement"):
        build_planner(ILQRConfig(horizon=10, compile=False), semi_model(), cost, PARAMS)
    planner = build_planner(
        MPPIConfig(num_samples=64, horizon=10, compile=False), semi_model(5), cost, PARAMS
    )
    assert planner.plan(start_state(track, 10.0)).cost_terms["disagreement"] > 0


LAP_CASES = [
    ("random:0", MPPIConfig(num_samples=256, horizon=20)),
    ("random:0", ILQRConfig(horizon=20)),
    ("Zandvoort", MPPIConfig(num_samples=256, horizon=20)),
    ("Zandvoort", ILQRConfig(horizon=20)),
]


@pytest.mark.slow
@pytest.mark.parametrize("track_name,config", LAP_CASES, ids=[f"{t}-{c.kind}" for t, c in LAP_CASES])
def test_full_lap_at_10_mps(track_name: str, config) -> None:
    torch.manual_seed(0)
    lap_track = load_track(shared_track(track_name) if track_name == "Zandvoort" else track_name)
    planner = kinematic_planner(config, lap_track, cost_config=CostConfig(target_speed=10.0))
    plant = KinematicBicycle(PARAMS, 0.05)
    log = run_closed_loop(
        make_core(planner, PARAMS, 0.05),
        FunctionPlant(plant.step),
        lap_track,
        start_state(lap_track, 10.0),
        control_period=0.05,
        vehicle_width=PARAMS.width,
        laps=1.0,
    )
    summary = log.summary()
    assert summary["completed"], summary
    assert summary["mean_abs_lateral_m"] < 0.3, summary
    assert summary["offtrack_s"] == 0.0, summary


@pytest.mark.parametrize("make", [lambda: KinematicBicycle(PARAMS, 0.05), lambda: semi_model(1, torch.float64)], ids=["kinematic", "semi"])
def test_field_steps_equal_stacked_steps(make) -> None:
    model = make()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    x[:, State.V] = x[:, State.V].abs() * 5 + 1
    u = torch.randn(32, 2, generator=g, dtype=torch.float64) * 0.3
    fields = model.step_fields(tuple(x.unbind(-1)), tuple(u.unbind(-1)))
    torch.testing.assert_close(torch.stack(fields, -1), model.step(x, u), rtol=1e-12, atol=1e-12)
