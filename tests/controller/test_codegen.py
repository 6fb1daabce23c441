"""The kernel's model equations are generated from their Python definition, and translated right.

The generated kinematic step and Jacobians are held to the torch model and the CasADi twin by
test_native.py (rollouts, Jacobians); here the translator itself is checked op by op against
CasADi's own evaluation, and the C source is checked not to restate what is generated.
"""

from __future__ import annotations

import ctypes
import math
import re
import shutil
import subprocess
from pathlib import Path

import casadi as ca
import pytest
import torch

from controller.native import codegen
from controller.native.build import SOURCE_NAME, source_text
from vehicle_models.params import BicycleParams

PRELUDE = """
#include <math.h>
typedef struct { float dt; float vehicle[24]; } Problem;
static inline float sin_via_cos(float a) { return sinf(a); }
"""


def compile_and_load(tmp_path: Path, code: str) -> ctypes.CDLL:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src, lib = tmp_path / "t.c", tmp_path / "t.so"
    src.write_text(code)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-std=c11", str(src), "-o", str(lib), "-lm"], check=True)
    return ctypes.CDLL(str(lib))


def test_translated_operations_evaluate_like_casadi(tmp_path: Path) -> None:
    x, u = ca.SX.sym("x", 3), ca.SX.sym("u", 2)
    theta, dt = ca.SX.sym("vehicle", 2), ca.SX.sym("dt")
    outputs = ca.vertcat(
        ca.fmin(x[0], theta[0]) + ca.fmax(x[1], theta[1]),
        ca.if_else(ca.fabs(x[2]) < 1e-4, 1.0 - x[2] ** 2 / 6, ca.sin(x[2]) / x[2]),
        ca.atan(ca.tan(u[0])) * ca.cos(u[1]) + ca.sqrt(ca.exp(x[0])) - dt,
        ca.logic_and(x[0] > 0, ca.logic_or(u[0] <= 0, ca.logic_not(x[1] == 0))),
        ca.atan2(x[1], x[0]) + ca.floor(u[1] * 3.7),
    )
    fn = ca.Function("probe", [x, u, theta, dt], [outputs, ca.jacobian(outputs, x)])
    body = codegen.c_function("probe", fn, ["x[{}]", "u[{}]", "p->vehicle[{}]", "p->dt"], ["out", "jac"])
    lib = compile_and_load(tmp_path, PRELUDE + body.replace("static inline ", "") + "\n")
    lib.probe.argtypes = [ctypes.c_void_p] * 5
    floats = lambda *v: (ctypes.c_float * len(v))(*v)  # noqa: E731
    for point in ([0.3, -1.2, 0.0, 0.4, 0.9], [-2.0, 0.5, 0.7, -0.3, 0.1], [1.5, 0.0, 2e-5, 0.0, -2.2]):
        problem = floats(0.05, 0.25, -0.5, *([0.0] * 22))
        out, jac = floats(*[0.0] * 5), floats(*[9.0] * 15)
        lib.probe(problem, floats(*point[:3]), floats(*point[3:]), out, jac)
        want_out, want_jac = fn(point[:3], point[3:], [0.25, -0.5], 0.05)
        for i in range(5):
            assert out[i] == pytest.approx(float(want_out[i]), rel=1e-5, abs=1e-5)
            for j in range(3):
                assert jac[i * 3 + j] == pytest.approx(float(want_jac[i, j]), rel=1e-4, abs=1e-5)


def test_an_operation_without_a_translation_is_refused() -> None:
    x = ca.SX.sym("x", 1)
    fn = ca.Function("f", [x, ca.SX.sym("u", 1), ca.SX.sym("v", 1), ca.SX.sym("dt")], [ca.erf(x)])
    with pytest.raises(codegen.CodegenError, match="ERF"):
        codegen.c_function("f", fn, ["x[{}]", "u[{}]", "p->vehicle[{}]", "p->dt"], ["out"])


def test_the_c_source_does_not_restate_the_generated_equations() -> None:
    c = source_text().decode()
    assert "p->vehicle" not in c, f"{SOURCE_NAME} reads vehicle parameters by hand"
    for name in BicycleParams.model_fields:
        assert not re.search(rf"p->{name}\b", c), f"{SOURCE_NAME} has its own {name}"
    header = codegen.generated_header()
    assert "static inline void nominal_step(" in header and "static inline void nominal_jacobian(" in header
    assert all(f"p->vehicle[{i}]" in header for i, n in enumerate(codegen.VEHICLE_PARAMS)
               if n in ("wheelbase", "steer_gain", "accel_max"))
    assert math.isfinite(len(header))


def test_the_seven_field_equations_carry_yaw_rate_and_slip_and_read_a_lat_from_the_yaw_rate() -> None:
    header = codegen.generated_header(7)
    assert "#define GENERATED_NX 7" in header and "#define GENERATED_NX 5" in codegen.generated_header(5)
    step = header[header.index("void nominal_step("):header.index("void nominal_jacobian(")]
    for field in (5, 6):  # yaw_rate, slip: read and written unchanged by the nominal step
        read = re.search(rf"(w\d+) = x\[{field}\]\[l\];", step)
        assert read and f"x_next[{field}][l] = {read.group(1)};" in step
    features = header[header.index("void vehicle_features("):header.index("void vehicle_feature_jacobian(")]
    assert "x[5][l]" in features and "tanf" not in features  # a_lat = v * yaw_rate, not the bicycle's
    with pytest.raises(codegen.CodegenError, match="no kernel for 6 state fields"):
        codegen.generated_header(6)


def test_the_c_source_does_not_restate_the_state_cost_terms() -> None:
    c = source_text().decode()
    for hand_written in ("over_left", "excess", "heading_error * heading_error", "w_lateral"):
        assert hand_written not in c
    assert "static inline void state_residuals(" in codegen.generated_header()
    assert "T_LATERAL" in codegen.terms_header()


def test_the_c_source_does_not_restate_the_action_and_linear_cost_terms() -> None:
    c = source_text().decode()
    for hand_written in ("effort_w", "rate_w", "T_EFFORT", "T_RATE", "w_progress", "T_PROGRESS", "floorf(gained"):
        assert hand_written not in c
    assert "static inline void linear_residuals(" in codegen.generated_header()
    assert "T_PROGRESS = END_ACTION_TERMS" in codegen.terms_header()
    assert "static inline void action_residuals(" in codegen.generated_header()
    assert "static inline void action_residual_jacobian(" in codegen.generated_header()
    assert "T_EFFORT = N_STATE_TERMS, T_RATE" in codegen.terms_header()


def test_the_c_source_does_not_restate_the_projection_the_activations_or_the_correction() -> None:
    """The track projection and its derivative, the track features, the residual's activations
    and slopes and its world-frame increment are generated (lookup.py, costs.py, residual.py,
    semi_parametric.py); the C keeps only the mechanism around them (grid lookup, layers)."""
    c = source_text().decode()
    for hand_written in ("branch_penalty *", "wrap_angle", "TWO_PI", "INV_LEN", "stretch", "normal[",
                         "exp_inline(-", "ACT_SILU)", "1.0f - th * th", "dt * (c *", "output_field[o] == SX"):
        assert hand_written not in c, hand_written
    header = codegen.generated_header(7)
    for generated in ("project_on_branches(", "track_features(", "track_feature_jacobian(", "residual_increment(",
                      "residual_increment_jacobian(", "activate_lanes(", "activation_slope_lanes(",
                      *(f"activate_{name}(" for name in ("silu", "relu", "tanh"))):
        assert f"static inline void {generated}" in header, generated
    terms = codegen.terms_header()
    assert "COL_INV_LEN" in terms and "P_WIDTH_RIGHT, N_PROJECTION" in terms and "ACT_SILU, ACT_RELU, ACT_TANH" in terms


def _one_sided_speed(ops, f, c):  # a new state residual
    return ops.relu(f.speed_error) + 0.5 * f.lateral


def _saturating_rate(ops, u, prev, inv_scale):  # a new action residual, not linear in the actions
    return ops.tanh(3.0 * (u - prev) * inv_scale)


def _speed_gradient_is_one_sided(cost, q, *_) -> None:
    speed_gradient = q.l_z[1:, 3]  # no gradient below the reference, some above it
    assert bool((speed_gradient == 0).any()) and bool((speed_gradient != 0).any())


def _rate_hessian_saturates(cost, q, *_) -> None:
    # l_uu holds the effort and rate terms alone. Gauss-Newton of w tanh(3 s d)^2 per action field
    # has curvature 2 w (3 s sech^2(3 s d))^2: at most the 2 w (3 s)^2 of a square, and below it
    # wherever the change d is not zero (the quadratic rate term gave it everywhere).
    s = cost.inv_action_scale.double()
    rate = torch.diagonal(q.l_uu, dim1=-2, dim2=-1).double() - 2.0 * cost.action_w["effort"] * s**2
    square = 2.0 * cost.action_w["rate"] * (3.0 * s) ** 2
    assert bool((rate <= square * (1 + 1e-4)).all()) and bool((rate < 0.99 * square).any())


def _half_progress(ops, s_end, s_start, length):  # a new linear residual: half the arc length
    from controller.costs import arc_gained

    return -0.5 * arc_gained(ops, s_start, s_end, length)


def _progress_gradient_is_halved(cost, q, X, U, last) -> None:
    # The progress term adds w dr/ds_H ds/dp to l_z at t = H, dr/ds_H = -0.5 for the edited one.
    from controller.costs import CostConfig, CostWeights, TrackCost

    without = TrackCost(CostConfig(weights=CostWeights(progress=0.0)), cost.track, cost.params)
    added = q.l_z[-1, :2] - without.quadratize(X, U, last).l_z[-1, :2]
    _, ds_dp = cost.feature_jacobian(X[1:], U)
    torch.testing.assert_close(added, -0.5 * cost.config.weights.progress * ds_dp[-1], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "table, name, edited, check, weights",
    [("STATE_RESIDUALS", "speed", _one_sided_speed, _speed_gradient_is_one_sided, {}),
     ("ACTION_RESIDUALS", "rate", _saturating_rate, _rate_hessian_saturates, {}),
     ("LINEAR_RESIDUALS", "progress", _half_progress, _progress_gradient_is_halved, {"progress": 2.0})],
    ids=["state-term", "action-term", "linear-term"],
)
def test_a_term_edited_in_costs_runs_the_same_in_torch_and_in_the_kernel(
    monkeypatch, tmp_path, table, name, edited, check, weights
) -> None:
    """One edit in one place: a changed residual in STATE_RESIDUALS, ACTION_RESIDUALS or
    LINEAR_RESIDUALS reaches the generated C, its costs and its Gauss-Newton derivatives (torch's
    autodiff, the kernel's generated ones)."""
    from controller import costs
    from controller.costs import CostConfig, CostWeights, TrackCost
    from controller.native import NativeProblem
    from controller.native import build as native_build
    from controller.native.problem import num_blocks, to_blocked
    from controller.track import load_track, start_state
    from vehicle_models import KinematicBicycle, load_params

    monkeypatch.setitem(getattr(costs, table), name, edited)
    monkeypatch.setenv("VEHICLE_MPC_CACHE", str(tmp_path))
    codegen.generated_header.cache_clear()
    native_build._load.cache_clear()
    try:
        params = load_params("passenger_car")
        track = load_track("random:0")
        config = CostConfig(weights=CostWeights(**weights))
        model, cost = KinematicBicycle(params, 0.05), TrackCost(config, track, params)
        low, high = torch.tensor(params.action_low), torch.tensor(params.action_high)
        H, K = 20, 40
        actions = torch.rand(H, K, 2, generator=torch.Generator().manual_seed(2)) * (high - low) + low
        x0 = start_state(track, 10.0, s=20.0).float()
        states = torch.stack([x0.expand(K, -1)] + [x0.expand(K, -1)] * H)
        for t in range(H):
            states[t + 1] = model.step(states[t], actions[t])
        last = torch.zeros(2)
        want = cost.evaluate(states, actions, last)
        native = NativeProblem(model, cost, low, high, num_threads=1)
        costs_out, terms = torch.empty(K), torch.empty(len(cost.term_names), K)
        native.rollout(x0, torch.zeros(H, 2), to_blocked(actions), last, K, None, None, costs_out, terms)
        row = cost.term_names.index(name)
        torch.testing.assert_close(terms[row], want.terms[row], rtol=2e-4, atol=1e-3)
        torch.testing.assert_close(costs_out, want.total, rtol=2e-4, atol=1e-3)
        assert num_blocks(K) == 3
        X, U = states[:, 3].contiguous(), actions[:, 3].contiguous()
        want_q = cost.quadratize(X, U, last)
        got_q = tuple(torch.empty_like(t) for t in want_q)
        native.quadratize(X, U, last, got_q)
        for got, expected in zip(got_q, want_q):
            torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
        check(cost, want_q, X, U, last)
    finally:
        codegen.generated_header.cache_clear()
        native_build._load.cache_clear()
