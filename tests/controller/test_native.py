"""The native kernel computes what the torch path computes; bad input cannot break it.

Oracles: the torch model rollout and ``TrackCost.evaluate`` (themselves tested against CommonRoad,
brute-force projection and finite differences elsewhere), on a simple track and on one that
crosses itself (branch selection), for the kinematic model, one residual and an ensemble.
"""

from __future__ import annotations

import math

import pytest
import torch

from controller.costs import CostConfig, CostWeights, TrackCost
from controller.native import NativeProblem, NativeUnavailable
from controller.native import build as native_build
from controller.native.problem import LANES, from_blocked, num_blocks, to_blocked
from controller.planners.mppi import MPPI, MPPIConfig
from controller.planners.noise import NoiseConfig
from controller.track import load_track
from sim.closed_loop import start_state
from vehicle_models import KinematicBicycle, load_params
from vehicle_models.dynamics import rollout
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS, SemiParametricModel

PARAMS = load_params("passenger_car")
LOW, HIGH = torch.tensor(PARAMS.action_low), torch.tensor(PARAMS.action_high)


def make_model(members: int, activation: str = "silu"):
    nominal = KinematicBicycle(PARAMS, 0.05)
    if members == 0:
        return nominal
    config = ResidualConfig(hidden=(64, 48), ensemble_size=members, activation=activation)
    residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), config, seed=3)
    with torch.no_grad():
        residual.weights[-1].mul_(20)  # a correction large enough to matter
    return SemiParametricModel(nominal, residual)


def torch_rollout(model, x0, actions):
    """States (H+1, K, nx) and, for an ensemble, the per-step disagreement (H, K)."""
    K = actions.shape[1]
    if getattr(model, "ensemble_size", 1) < 2:
        return rollout(model, x0.expand(K, -1), actions), None
    states, spreads = [x0.expand(K, -1)], []
    for t in range(actions.shape[0]):
        x, spread = model.step_with_disagreement(states[-1], actions[t])
        states.append(x)
        spreads.append(spread)
    return torch.stack(states), torch.stack(spreads)


def assert_native_quadratize_equals(native, X, U, last, want) -> None:
    """The kernel's Gauss-Newton derivatives along (X, U) equal torch's ``want``."""
    got = tuple(torch.empty_like(t) for t in want)
    native.quadratize(X.contiguous(), U, last, got)
    for name, g, w in zip(want._fields, got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()), msg=name)


@pytest.mark.parametrize("track_name", ["random:0", "figure_eight"])
@pytest.mark.parametrize("members", [0, 1, 5], ids=["kinematic", "semi", "ensemble5"])
def test_rollout_costs_and_states_equal_the_torch_path(track_name: str, members: int) -> None:
    track = load_track(track_name)
    model = make_model(members)
    # friction on: the random actions brake up to 9 m/s^2, past the 0.8 mu g budget
    weights = CostWeights(progress=1.0, friction=50.0, overspeed=2.0, disagreement=0.5 if members > 1 else 0.0)
    cost = TrackCost(CostConfig(weights=weights), track, PARAMS)
    g = torch.Generator().manual_seed(members)
    H, K = 30, 300  # K not a multiple of the block width: the padding lanes must not leak
    x0 = start_state(track, 10.0, s=35.0).float()
    actions = torch.rand(H, K, 2, generator=g) * (HIGH - LOW) + LOW
    last = torch.tensor([0.1, -0.5])
    states, spread = torch_rollout(model, x0, actions)
    expected = cost.evaluate(states, actions, last, spread)

    native = NativeProblem(model, cost, LOW, HIGH, num_threads=2)
    got_states = torch.empty(H + 1, K, 5)
    costs, terms = torch.empty(K), torch.empty(len(cost.term_names), K)
    samples = torch.empty(num_blocks(K), H, 2, LANES)
    native.rollout(x0, torch.zeros(H, 2), to_blocked(actions), last, K, samples, got_states, costs, terms)

    assert torch.equal(from_blocked(samples, K), actions)
    torch.testing.assert_close(got_states, states, rtol=0, atol=2e-4)
    torch.testing.assert_close(costs, expected.total, rtol=2e-4, atol=1e-3)
    torch.testing.assert_close(terms, expected.terms, rtol=2e-4, atol=1e-3)


def assert_native_mppi_iteration_equals_torch(model, track, x0: torch.Tensor) -> None:
    """One MPPI iteration from ``x0`` (moved 0.5 m sideways) on the same white noise, native
    against torch: the weighted actions, the rollouts and the cost agree."""
    cost = TrackCost(CostConfig(), track, PARAMS)
    config = MPPIConfig(num_samples=200, horizon=25, noise=NoiseConfig(kind="white"), compile=False)
    on_torch = MPPI(config.model_copy(update={"backend": "torch"}), model, cost, PARAMS.action_low, PARAMS.action_high)
    native = MPPI(config.model_copy(update={"backend": "native"}), model, cost, PARAMS.action_low, PARAMS.action_high)
    assert (on_torch.backend, native.backend) == ("torch", "native")
    x0[1] += 0.5
    nominal = torch.zeros(25, 2)
    nominal[:, 0] = 0.05
    noise = on_torch.sampler.draw().clone()
    last = torch.tensor([0.0, 0.3])
    want = on_torch._iteration(x0, nominal, noise, last)
    got = native._iterate(x0, nominal, to_blocked(noise), last)
    assert got.states.shape[-1] == x0.shape[-1]
    torch.testing.assert_close(got.actions, want.actions, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(got.states, want.states, rtol=1e-4, atol=1e-3)
    assert float(got.cost) == pytest.approx(float(want.cost), rel=1e-4)
    assert float(got.effective_samples) == pytest.approx(float(want.effective_samples), rel=1e-3)


@pytest.mark.parametrize("members", [0, 1], ids=["kinematic", "semi"])
def test_mppi_iteration_equals_the_torch_iteration_on_the_same_noise(members: int) -> None:
    track = load_track("random:0")
    assert_native_mppi_iteration_equals_torch(make_model(members), track, start_state(track, 9.0, s=80.0).float())


def test_same_seed_same_native_plan() -> None:
    track = load_track("random:0")
    cost = TrackCost(CostConfig(), track, PARAMS)
    x0 = start_state(track, 10.0)

    def plan(seed: int) -> torch.Tensor:
        config = MPPIConfig(num_samples=100, horizon=20, seed=seed, backend="native")
        return MPPI(config, make_model(1), cost, PARAMS.action_low, PARAMS.action_high).plan(x0).actions

    assert torch.equal(plan(3), plan(3))
    assert not torch.equal(plan(3), plan(4))


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e30, -1e30])
def test_non_finite_and_absurd_states_stay_inside_the_tables(bad: float) -> None:
    track = load_track("figure_eight")
    cost = TrackCost(CostConfig(), track, PARAMS)
    native = NativeProblem(make_model(1), cost, LOW, HIGH, num_threads=2)
    H, K = 10, 40
    blocks = num_blocks(K)
    for field in range(5):
        x0 = start_state(track, 8.0).float()
        x0[field] = bad
        plan, states, terms, stats = torch.empty(H, 2), torch.empty(H + 1, 5), torch.empty(6), torch.empty(3)
        noise = to_blocked(torch.randn(H, K, 2, generator=torch.Generator().manual_seed(field)))
        native.mppi_iteration(
            x0, torch.zeros(H, 2), noise, K, torch.zeros(2), 0.5,
            torch.empty(blocks, H, 2, LANES), torch.empty(blocks * LANES), plan, states, terms, stats,
        )  # must return (no crash, no out-of-bounds read); the plan may be NaN
    # A NaN in one sample's noise costs that sample its weight, not the plan.
    noise = torch.randn(H, K, 2, generator=torch.Generator().manual_seed(9)) * 0.1
    noise[:, 7] = math.nan
    ok = native.mppi_iteration(
        start_state(track, 8.0).float(), torch.zeros(H, 2), to_blocked(noise), K, torch.zeros(2), 0.5,
        torch.empty(blocks, H, 2, LANES), torch.empty(blocks * LANES), plan, states, terms, stats,
    )
    assert ok and torch.isfinite(plan).all() and torch.isfinite(states).all()


def test_without_a_compiler_auto_falls_back_to_torch_and_native_refuses(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("VEHICLE_MPC_CACHE", str(tmp_path / "cache"))
    native_build._load.cache_clear()
    try:
        with pytest.raises(NativeUnavailable, match="does not run"):
            native_build.build()
        track = load_track("circle")
        cost = TrackCost(CostConfig(), track, PARAMS)
        config = MPPIConfig(num_samples=32, horizon=10, compile=False)
        planner = MPPI(config, make_model(0), cost, PARAMS.action_low, PARAMS.action_high)
        assert planner.backend == "torch"
        assert torch.isfinite(planner.plan(start_state(track, 5.0)).actions).all()
        with pytest.raises(ValueError, match="backend 'native' cannot run here"):
            MPPI(config.model_copy(update={"backend": "native"}), make_model(0), cost,
                 PARAMS.action_low, PARAMS.action_high)
    finally:
        native_build._load.cache_clear()


def test_loading_the_kernel_leaves_subnormals_alone() -> None:
    # A library linked with -ffast-math would switch the whole process to flush-to-zero.
    import numpy as np

    native_build.load()
    tiny = np.float32(1e-40)
    assert tiny != 0 and np.float32(tiny * np.float32(0.5)) != 0
    assert float(torch.tensor(1e-40, dtype=torch.float32) * 0.5) != 0.0


def test_the_kernel_is_built_once_and_cached(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("VEHICLE_MPC_CACHE", str(tmp_path))
    first = native_build.build()
    mtime = first.stat().st_mtime_ns
    assert native_build.build() == first and first.stat().st_mtime_ns == mtime
    assert first.parent == tmp_path / "native" and list(first.parent.iterdir()) == [first]
    assert native_build.build(native_build.PORTABLE_MARCH) != first  # another target, another file


# -- iLQR's pieces --------------------------------------------------------------------------------
def ilqr_trajectory(model, track, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    H = 40
    x0 = start_state(track, 10.0, s=50.0).float()
    x0[1] += 1.5
    U = (torch.rand(H, 2, generator=g) * (HIGH - LOW) + LOW) * 0.5
    return x0, U, rollout(model, x0, U)


@pytest.mark.parametrize("members", [0, 1, 3], ids=["kinematic", "semi", "ensemble3"])
def test_jacobians_equal_casadi_and_autodiff(members: int) -> None:
    track = load_track("random:0")
    model = make_model(members)
    native = NativeProblem(model, TrackCost(CostConfig(), track, PARAMS), LOW, HIGH, num_threads=1)
    _, U, X = ilqr_trajectory(model, track)
    A_want, B_want = model.linearize(X[:-1], U)  # CasADi twin + torch.func on the residual
    A, B = torch.empty(40, 5, 5), torch.empty(40, 5, 2)
    native.linearize(X[:-1].contiguous(), U, A, B)
    torch.testing.assert_close(A, A_want, rtol=0, atol=2e-5)
    torch.testing.assert_close(B, B_want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("friction", [0.0, 200.0], ids=["tracking", "friction"])
def test_cost_quadratization_equals_the_torch_one(friction: float) -> None:
    track = load_track("figure_eight")
    model = make_model(1)
    # A budget of 0.1 mu g: the trajectory's corners and speed changes exceed it at some steps.
    config = CostConfig(weights=CostWeights(progress=0.5, friction=friction, overspeed=friction / 100), friction_margin=0.1)
    cost = TrackCost(config, track, PARAMS)
    native = NativeProblem(model, cost, LOW, HIGH, num_threads=1)
    _, U, X = ilqr_trajectory(model, track, seed=1)
    last = torch.tensor([0.1, 0.2])
    want = cost.quadratize(X, U, last)
    if friction:
        exceeds = cost.evaluate(X.unsqueeze(1), U.unsqueeze(1), last).terms[cost.term_names.index("friction")]
        assert float(exceeds) > 0  # the term is active along this trajectory
    assert_native_quadratize_equals(native, X, U, last, want)


def test_policy_rollouts_equal_the_torch_closed_loop() -> None:
    from controller.planners.ilqr import ILQR, ILQRConfig

    track = load_track("random:0")
    model = make_model(1)
    cost = TrackCost(CostConfig(), track, PARAMS)
    config = ILQRConfig(horizon=40, compile=False)
    on_torch = ILQR(config.model_copy(update={"backend": "torch"}), model, cost, PARAMS.action_low, PARAMS.action_high)
    native = ILQR(config.model_copy(update={"backend": "native"}), model, cost, PARAMS.action_low, PARAMS.action_high)
    x0, U, X = ilqr_trajectory(model, track, seed=2)
    g = torch.Generator().manual_seed(5)
    k = torch.randn(40, 2, generator=g) * 0.3
    K = torch.randn(40, 2, 7, generator=g) * 0.05
    last = torch.tensor([0.05, -0.2])
    want = on_torch._closed_loop(x0, X, U, k, K, on_torch.alphas, last)
    got = native._forward(x0, X, U, k, K, native.alphas, last)
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_, rtol=1e-4, atol=1e-3)


def test_native_ilqr_plans_like_the_torch_ilqr() -> None:
    from controller.planners.ilqr import ILQR, ILQRConfig

    track = load_track("random:0")
    model = make_model(1)
    cost = TrackCost(CostConfig(), track, PARAMS)
    config = ILQRConfig(horizon=30, max_iterations=5, compile=False)
    x0 = start_state(track, 10.0, s=120.0).float()
    x0[1] -= 0.8
    plans = [
        ILQR(config.model_copy(update={"backend": b}), model, cost, PARAMS.action_low, PARAMS.action_high).plan(x0)
        for b in ("torch", "native")
    ]
    assert plans[1].iterations == plans[0].iterations
    assert plans[1].cost == pytest.approx(plans[0].cost, rel=1e-3)
    torch.testing.assert_close(plans[1].actions[:, 0], plans[0].actions[:, 0], rtol=1e-2, atol=2e-3)
    # Up to 0.037 m/s^2 apart while the model was linearised at actions clamped exactly to the
    # box: the clip's derivative there was 1/2 in the kernel and 0 in torch (ILQR.__init__);
    # measured 2e-5 since.
    torch.testing.assert_close(plans[1].actions[:, 1], plans[0].actions[:, 1], rtol=0, atol=1e-3)


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
@pytest.mark.parametrize("members", [1, 5], ids=["semi", "ensemble5"])
def test_residual_network_alone_equals_the_torch_forward_pass(members: int, activation: str) -> None:
    """Every activation: the kernel's is generated from the CasADi primitive, torch runs its own."""
    from vehicle_models.residual import fused_forward

    model = make_model(members, activation)
    native = NativeProblem(model, TrackCost(CostConfig(), load_track("circle"), PARAMS), LOW, HIGH, 2)
    n_in = model.residual.in_dim
    features = torch.randn(37, n_in, generator=torch.Generator().manual_seed(4)) * 3  # 37: a partial block
    rates, spread = torch.empty(37, len(model.output_fields)), torch.empty(37)
    native.residual(features, rates, spread)
    want = fused_forward(model.fused, activation, features)
    torch.testing.assert_close(rates, want.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(spread, want.disagreement, rtol=1e-4, atol=1e-5)


# -- the interface cannot drift or be fed the wrong memory -------------------------------------
def test_struct_layout_is_checked_field_by_field_against_the_kernel() -> None:
    import ctypes

    from controller.native.problem import Problem, kernel_layout, layout_mismatch, python_layout

    lib = native_build.load()
    assert layout_mismatch(kernel_layout(lib), python_layout(Problem)) is None
    fields = list(Problem._fields_)
    i, j = [n for n, (name, _) in enumerate(fields) if name in ("half_width", "terminal_weight")]
    fields[i], fields[j] = fields[j], fields[i]  # same type, same total size: only names differ
    swapped = type("Swapped", (ctypes.Structure,), {"_fields_": fields})
    assert ctypes.sizeof(swapped) == ctypes.sizeof(Problem)
    assert "half_width" in layout_mismatch(kernel_layout(lib), python_layout(swapped))
    shorter = type("Shorter", (ctypes.Structure,), {"_fields_": list(Problem._fields_)[:-1]})
    assert layout_mismatch(kernel_layout(lib), python_layout(shorter)) is not None


def test_tensors_of_the_wrong_dtype_layout_or_shape_never_reach_the_kernel() -> None:
    track = load_track("circle")
    native = NativeProblem(make_model(0), TrackCost(CostConfig(), track, PARAMS), LOW, HIGH, num_threads=1)
    H, K = 10, 20
    x0 = start_state(track, 5.0).float()
    good = dict(x0=x0, base=torch.zeros(H, 2), perturb=None, last_action=torch.zeros(2), num_samples=K,
                costs=torch.empty(K), states=torch.empty(H + 1, K, 5))
    native.rollout(**good)
    bad = {
        "float64": dict(base=torch.zeros(H, 2, dtype=torch.float64)),
        "strided": dict(states=torch.empty(K, H + 1, 5).transpose(0, 1)),
        "short": dict(costs=torch.empty(K - 1)),
        "not a tensor": dict(x0=x0.numpy()),
    }
    for what, change in bad.items():
        with pytest.raises((ValueError, TypeError), match="native kernel"):
            native.rollout(**{**good, **change})
        assert what  # each case raised before any pointer crossed


def test_a_cost_term_the_kernel_lacks_is_refused_not_dropped() -> None:
    from controller.native import supports
    from controller.native.problem import native_problem_for

    cost = TrackCost(CostConfig(), load_track("circle"), PARAMS)
    assert supports(make_model(0), cost) is None
    cost.term_names = (*cost.term_names, "curb")  # a term the torch path would have, the kernel not
    assert "curb" in (supports(make_model(0), cost) or "")
    assert native_problem_for("MPPI", "auto", make_model(0), cost, LOW, HIGH, 1) is None
    with pytest.raises(ValueError, match="backend 'native' cannot run"):
        native_problem_for("MPPI", "native", make_model(0), cost, LOW, HIGH, 1)

    class Subclassed(TrackCost):  # may compute any term differently: refused by type
        pass

    assert "not a TrackCost" in (supports(make_model(0), Subclassed(CostConfig(), load_track("circle"), PARAMS)) or "")


def test_a_failed_build_falls_back_with_a_line_on_stderr(tmp_path) -> None:
    import subprocess
    import sys

    probe = (
        "from controller.costs import CostConfig, TrackCost\n"
        "from controller.planners.mppi import MPPI, MPPIConfig\n"
        "from controller.track import load_track\n"
        "from vehicle_models import KinematicBicycle, load_params\n"
        "p = load_params('passenger_car')\n"
        "m = MPPI(MPPIConfig(num_samples=32, horizon=5, compile=False), KinematicBicycle(p, 0.05),\n"
        "         TrackCost(CostConfig(), load_track('circle'), p), p.action_low, p.action_high)\n"
        "print(m.backend)\n"
    )
    env = {**__import__("os").environ, "CC": "false", "VEHICLE_MPC_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch"
    assert "native kernel cannot run here" in result.stderr and "building rollout.c failed" in result.stderr


# -- the 7-field dynamic-state model (kinematic_dynamic_state + residual) -------------------------
def make_model7(members: int):
    """The kinematic bicycle on the 7-field state (yaw_rate, slip carried) and a residual that
    reads steer, v, yaw_rate, slip and corrects every motion field (the bundle's defaults)."""
    from vehicle_models.dynamic_nominal import KinematicDynamicState
    from vehicle_models.semi_parametric import DYNAMIC_INPUT_FIELDS, DYNAMIC_OUTPUT_FIELDS

    nominal = KinematicDynamicState(PARAMS, 0.05)
    if members == 0:
        return nominal
    residual = ResidualEnsemble(len(DYNAMIC_INPUT_FIELDS) + 2, len(DYNAMIC_OUTPUT_FIELDS),
                                ResidualConfig(hidden=(64, 48), ensemble_size=members), seed=5)
    with torch.no_grad():
        residual.weights[-1].mul_(20)  # a correction large enough to matter, yaw_rate and slip too
    return SemiParametricModel(nominal, residual, DYNAMIC_INPUT_FIELDS, DYNAMIC_OUTPUT_FIELDS)


def start7(track, speed: float, s: float = 0.0) -> torch.Tensor:
    x0 = start_state(track, speed, s=s, state_dim=7).float()
    x0[5], x0[6] = 0.12, -0.02  # yaw_rate, slip: read by the residual and the friction term
    return x0


@pytest.mark.parametrize("members", [0, 1, 3], ids=["kinematic7", "semi7", "ensemble3"])
def test_seven_field_rollout_states_and_costs_equal_the_torch_path(members: int) -> None:
    track = load_track("figure_eight")
    model = make_model7(members)
    weights = CostWeights(progress=1.0, friction=50.0, overspeed=2.0, disagreement=0.5 if members > 1 else 0.0)
    cost = TrackCost(CostConfig(weights=weights), track, PARAMS)
    g = torch.Generator().manual_seed(10 + members)
    H, K = 25, 70  # a partial last block
    x0 = start7(track, 10.0, s=35.0)
    actions = torch.rand(H, K, 2, generator=g) * (HIGH - LOW) + LOW
    last = torch.tensor([0.1, -0.5])
    states, spread = torch_rollout(model, x0, actions)
    assert float((states[-1, :, 5] - x0[5]).abs().max()) > (1e-3 if members else -1)  # corrected, or carried
    expected = cost.evaluate(states, actions, last, spread)
    assert float(expected.terms[cost.term_names.index("friction")].max()) > 0

    native = NativeProblem(model, cost, LOW, HIGH, num_threads=2)
    assert native.nx == 7
    got_states = torch.empty(H + 1, K, 7)
    costs, terms = torch.empty(K), torch.empty(len(cost.term_names), K)
    native.rollout(x0, torch.zeros(H, 2), to_blocked(actions), last, K, None, got_states, costs, terms)
    torch.testing.assert_close(got_states, states, rtol=0, atol=2e-4)
    torch.testing.assert_close(costs, expected.total, rtol=2e-4, atol=1e-3)
    torch.testing.assert_close(terms, expected.terms, rtol=2e-4, atol=1e-3)


def test_seven_field_a_lat_reads_the_yaw_rate_field() -> None:
    # The friction term's a_lat is v * yaw_rate on a 7-field state (costs.lateral_accel): the same
    # straight-line rollout costs more with a carried yaw rate than without, in torch and natively.
    track = load_track("circle")
    cost = TrackCost(CostConfig(weights=CostWeights(friction=100.0), friction_margin=0.3), track, PARAMS)
    native = NativeProblem(make_model7(0), cost, LOW, HIGH, num_threads=1)
    H, K = 5, 1
    friction = cost.term_names.index("friction")
    got = []
    for rate in (0.0, 1.0):
        x0 = start7(track, 12.0)
        x0[5], x0[6] = rate, 0.0
        terms, costs = torch.empty(len(cost.term_names), K), torch.empty(K)
        native.rollout(x0, torch.zeros(H, 2), None, torch.zeros(2), K, None, None, costs, terms)
        states, _ = torch_rollout(make_model7(0), x0, torch.zeros(H, K, 2))
        want = cost.evaluate(states, torch.zeros(H, K, 2), torch.zeros(2)).terms[friction]
        torch.testing.assert_close(terms[friction], want, rtol=1e-4, atol=1e-4)
        got.append(float(terms[friction, 0]))
    assert got[0] == 0.0 and got[1] > 0.0


def test_seven_field_mppi_iteration_equals_the_torch_iteration() -> None:
    track = load_track("random:0")
    assert_native_mppi_iteration_equals_torch(make_model7(1), track, start7(track, 9.0, s=80.0))


@pytest.mark.parametrize("members", [0, 1, 3], ids=["kinematic7", "semi7", "ensemble3"])
def test_seven_field_jacobians_equal_autodiff(members: int) -> None:
    track = load_track("random:0")
    model = make_model7(members)
    native = NativeProblem(model, TrackCost(CostConfig(), track, PARAMS), LOW, HIGH, num_threads=1)
    g = torch.Generator().manual_seed(7)
    x0 = start7(track, 10.0, s=50.0)
    U = (torch.rand(40, 2, generator=g) * (HIGH - LOW) + LOW) * 0.5
    X = rollout(model, x0, U)
    A_want, B_want = model.linearize(X[:-1], U)
    A, B = torch.empty(40, 7, 7), torch.empty(40, 7, 2)
    native.linearize(X[:-1].contiguous(), U, A, B)
    torch.testing.assert_close(A, A_want, rtol=0, atol=2e-5)
    torch.testing.assert_close(B, B_want, rtol=0, atol=2e-6)


def test_seven_field_cost_quadratization_equals_the_torch_one() -> None:
    track = load_track("figure_eight")
    model = make_model7(1)
    config = CostConfig(weights=CostWeights(progress=0.5, friction=200.0, overspeed=2.0), friction_margin=0.1)
    cost = TrackCost(config, track, PARAMS)
    native = NativeProblem(model, cost, LOW, HIGH, num_threads=1)
    g = torch.Generator().manual_seed(1)
    x0 = start7(track, 10.0, s=50.0)
    x0[1] += 1.5
    U = (torch.rand(40, 2, generator=g) * (HIGH - LOW) + LOW) * 0.5
    X = rollout(model, x0, U)
    last = torch.tensor([0.1, 0.2])
    want = cost.quadratize(X, U, last)
    assert float(want.l_z[:, 5].abs().max()) > 0  # the friction term's gradient on yaw_rate
    assert_native_quadratize_equals(native, X, U, last, want)


def test_seven_field_native_ilqr_plans_like_the_torch_ilqr() -> None:
    from controller.planners.ilqr import ILQR, ILQRConfig

    track = load_track("random:0")
    model = make_model7(1)
    cost = TrackCost(CostConfig(), track, PARAMS)
    config = ILQRConfig(horizon=30, max_iterations=5, compile=False)
    x0 = start7(track, 10.0, s=120.0)
    x0[1] -= 0.8
    planners = [ILQR(config.model_copy(update={"backend": b}), model, cost, PARAMS.action_low, PARAMS.action_high)
                for b in ("torch", "native")]
    assert [p.backend for p in planners] == ["torch", "native"]
    # the line search's closed-loop rollouts, one per step length, on the same gains
    g = torch.Generator().manual_seed(5)
    U = (torch.rand(30, 2, generator=g) * (HIGH - LOW) + LOW) * 0.3
    X = rollout(model, x0, U)
    k, K = torch.randn(30, 2, generator=g) * 0.3, torch.randn(30, 2, 9, generator=g) * 0.05
    last = torch.tensor([0.05, -0.2])
    want = planners[0]._closed_loop(x0, X, U, k, K, planners[0].alphas, last)
    got = planners[1]._forward(x0, X, U, k, K, planners[1].alphas, last)
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_, rtol=1e-4, atol=1e-3)
    plans = [p.plan(x0) for p in planners]
    assert plans[1].iterations == plans[0].iterations
    assert plans[1].cost == pytest.approx(plans[0].cost, rel=1e-4)
    torch.testing.assert_close(plans[1].actions, plans[0].actions, rtol=0, atol=1e-3)  # measured 5e-6


def make_single_track(members: int):
    """The single-track nominal (friction-limited linear tyres, two RK4 sub-steps per 0.05 s)
    and, with members, a residual on it reading and correcting the dynamic fields."""
    from vehicle_models.dynamic_nominal import SingleTrackNominal
    from vehicle_models.semi_parametric import DYNAMIC_INPUT_FIELDS, DYNAMIC_OUTPUT_FIELDS
    from vehicle_models.single_track import load_single_track_params

    nominal = SingleTrackNominal(load_single_track_params("passenger_car"), 0.05)
    if members == 0:
        return nominal
    residual = ResidualEnsemble(len(DYNAMIC_INPUT_FIELDS) + 2, len(DYNAMIC_OUTPUT_FIELDS),
                                ResidualConfig(hidden=(32, 32), ensemble_size=members), seed=6)
    with torch.no_grad():
        residual.weights[-1].mul_(5)
    return SemiParametricModel(nominal, residual, DYNAMIC_INPUT_FIELDS, DYNAMIC_OUTPUT_FIELDS)


def single_track_problem(members: int, H: int, K: int, seed: int):
    """A start at 18 m/s turning in, actions that reach the tyres' limits and the kinematic
    low-speed branch's neighbourhood, the model and a cost with its friction term."""
    track = load_track("figure_eight")
    model = make_single_track(members)
    cost = TrackCost(CostConfig(weights=CostWeights(progress=1.0, friction=50.0)), track, PARAMS)
    x0 = start7(track, 18.0, s=35.0)
    actions = torch.rand(H, K, 2, generator=torch.Generator().manual_seed(seed)) * (HIGH - LOW) + LOW
    return model, cost, x0, actions


@pytest.mark.parametrize("members", [0, 1], ids=["single_track", "single_track+residual"])
def test_single_track_rollout_states_and_costs_equal_the_torch_path(members: int) -> None:
    """The kernel's single-track step is generated from ``single_track_step``, the function the
    torch nominal runs: the same states and costs, tyres saturated in places."""
    H, K = 25, 40
    model, cost, x0, actions = single_track_problem(members, H, K, seed=3)
    states, _ = torch_rollout(model, x0, actions)
    expected = cost.evaluate(states, actions, torch.zeros(2))
    native = NativeProblem(model, cost, LOW, HIGH, num_threads=2)
    assert native.nx == 7
    got = torch.empty(H + 1, K, 7)
    costs, terms = torch.empty(K), torch.empty(len(cost.term_names), K)
    native.rollout(x0, torch.zeros(H, 2), to_blocked(actions), torch.zeros(2), K, None, got, costs, terms)
    assert float(states[:, :, 6].abs().max()) > 0.05  # it slides: the tyre terms matter
    torch.testing.assert_close(got, states, rtol=0, atol=2e-3)
    torch.testing.assert_close(costs, expected.total, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("members", [0, 1], ids=["single_track", "single_track+residual"])
def test_single_track_jacobians_equal_autodiff(members: int) -> None:
    model, cost, x0, actions = single_track_problem(members, 30, 1, seed=4)
    native = NativeProblem(model, cost, LOW, HIGH, num_threads=1)
    U = actions[:, 0] * 0.5
    X = rollout(model, x0, U)
    A_want, B_want = model.linearize(X[:-1], U)
    A, B = torch.empty(30, 7, 7), torch.empty(30, 7, 2)
    native.linearize(X[:-1].contiguous(), U, A, B)
    torch.testing.assert_close(A, A_want, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(B, B_want, rtol=1e-3, atol=1e-3)


def test_a_nominal_the_kernel_does_not_know_is_refused_with_its_reason() -> None:
    from controller.native import supports
    from controller.native.problem import native_problem_for
    from vehicle_models.dynamic_nominal import SingleTrackNominal

    class Tweaked(SingleTrackNominal):  # a subclass may change an equation the kernel does not know
        pass

    cost = TrackCost(CostConfig(), load_track("circle"), PARAMS)
    assert supports(make_model7(1), cost) is None and supports(make_single_track(1), cost) is None
    tweaked = Tweaked(make_single_track(0).params, 0.05)
    reason = supports(tweaked, cost) or ""
    assert "Tweaked" in reason and "single_track" in reason
    with pytest.raises(ValueError, match="backend 'native' cannot run here.*Tweaked"):
        native_problem_for("MPPI", "native", tweaked, cost, LOW, HIGH, 1)


def test_each_state_size_has_its_own_kernel_and_each_checks_it() -> None:
    five, seven = native_build.load(nx=5), native_build.load(nx=7)
    assert (five.vmpc_nx(), seven.vmpc_nx()) == (5, 7)
    assert native_build.build(nx=5) != native_build.build(nx=7)
    single_track = native_build.build(nx=7, nominal="single_track", substeps=2)
    assert single_track != native_build.build(nx=7) and "single_track2" in single_track.name
    from controller.native.problem import declare

    with pytest.raises(NativeUnavailable, match="built for 7 state fields, asked for 5"):
        declare(seven, 5)
    # Problem.vehicle holds the nominal's own parameters: a kernel of another nominal is refused
    with pytest.raises(NativeUnavailable, match="built for the nominal 'kinematic_dynamic_state', asked for 'single_track'"):
        declare(seven, 7, "single_track")
    assert native_build.load(nx=7, nominal="single_track", substeps=2).vmpc_nominal() == b"single_track"
