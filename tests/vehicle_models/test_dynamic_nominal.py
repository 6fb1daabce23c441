"""Dynamic-state models: the 7-field nominals, the semi-parametric model on them, bundles."""

from __future__ import annotations

import json

import pytest
import torch

from controller.core import fill_unmeasured, kinematic_yaw_rate_and_slip
from vehicle_models.bundle import BundleError, ModelBundle, load_bundle, save_bundle
from vehicle_models.dynamic_nominal import KinematicDynamicState, SingleTrackNominal
from vehicle_models.kinematic import KinematicBicycle
from vehicle_models.layout import State
from vehicle_models.params import load_params
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import SemiParametricModel, default_fields
from vehicle_models.single_track import SingleTrack, load_single_track_params
from vehicle_models.tyres import LimitedLinearTyre

PARAMS = load_params("passenger_car")
ST = load_single_track_params("passenger_car")
DT = 0.05


def states(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 7, dtype=torch.float64)
    x[:, State.X:State.Y + 1] = torch.randn(n, 2, generator=g, dtype=torch.float64) * 10
    x[:, State.STEER] = torch.randn(n, generator=g, dtype=torch.float64) * 0.03
    x[:, State.V] = 5 + 15 * torch.rand(n, generator=g, dtype=torch.float64)
    x[:, State.YAW] = torch.randn(n, generator=g, dtype=torch.float64)
    x[:, State.YAW_RATE] = torch.randn(n, generator=g, dtype=torch.float64) * 0.2
    x[:, State.SLIP] = torch.randn(n, generator=g, dtype=torch.float64) * 0.01
    u = torch.stack([0.2 * torch.randn(n, generator=g, dtype=torch.float64),
                     2 * torch.randn(n, generator=g, dtype=torch.float64)], -1)
    return x, u


def test_kinematic_dynamic_state_moves_the_pose_as_the_kinematic_bicycle_and_carries_the_rest() -> None:
    x, u = states()
    out = KinematicDynamicState(PARAMS, DT).step(x, u)
    assert torch.allclose(out[:, :5], KinematicBicycle(PARAMS, DT).step(x[:, :5], u))
    assert torch.equal(out[:, 5:], x[:, 5:])


def test_kinematic_dynamic_state_jacobians_match_autodiff() -> None:
    from vehicle_models.dynamics import linearize_autodiff

    x, u = states(4)
    model = KinematicDynamicState(PARAMS, DT)
    A, B = model.linearize(x, u)
    A_ad, B_ad = linearize_autodiff(model, x, u)
    assert torch.allclose(A, A_ad, atol=1e-8) and torch.allclose(B, B_ad, atol=1e-8)


def test_single_track_nominal_equals_the_true_single_track_below_the_friction_limit() -> None:
    x, u = states()
    x[:, State.STEER] *= 0.3  # slip angles well inside the linear range (|C_S alpha| < 1)
    x[:, State.YAW_RATE] *= 0.2
    x[:, State.SLIP] *= 0.2
    u[:, 0] *= 0.1
    # One 25 ms RK4 sub-step pair against one 50 ms step of the linear-tyre car: same model.
    fine = SingleTrack(ST, DT / 2)
    expected = fine.step(fine.step(x, u), u)
    assert torch.allclose(SingleTrackNominal(ST, DT).step(x, u), expected, atol=1e-9)


def test_the_nominal_tyre_is_flat_at_the_friction_limit() -> None:
    tyre = LimitedLinearTyre()
    alpha = torch.tensor([0.01, 0.2, -0.5], dtype=torch.float64)
    force = tyre.lateral_force(alpha, 5000.0, 1.0, 20.0)
    assert force.tolist() == pytest.approx([1000.0, 5000.0, -5000.0])


def test_single_track_nominal_is_stable_at_the_planner_step_from_a_crawl() -> None:
    x, u = states(32)
    x[:, State.V] = torch.linspace(0.0, 6.0, 32, dtype=torch.float64)
    model = SingleTrackNominal(ST, DT)
    for _ in range(40):
        x = model.step(x, u)
    assert torch.isfinite(x).all()
    assert x[:, State.YAW_RATE].abs().max() < 3.0


def dynamic_bundle(nominal: str, seed: int = 1) -> ModelBundle:
    inputs, outputs = default_fields(7)
    residual = ResidualEnsemble(len(inputs) + 2, len(outputs), ResidualConfig(hidden=(16, 16)), seed=seed)
    return ModelBundle("dyn", PARAMS, residual, nominal=nominal, single_track=ST,
                       input_fields=inputs, output_fields=outputs)


@pytest.mark.parametrize("nominal", ["kinematic_dynamic_state", "single_track"])
def test_dynamic_bundle_round_trips_and_its_model_has_seven_fields(tmp_path, nominal: str) -> None:
    path = save_bundle(dynamic_bundle(nominal), tmp_path / "b")
    loaded = load_bundle(path)
    assert loaded.nominal == nominal and loaded.state_dim == 7
    model = loaded.build(DT, dtype=torch.float64)
    assert isinstance(model, SemiParametricModel) and model.state_dim == 7
    x, u = states(8)
    out = model.step(x, u)
    # The residual reads yaw_rate and slip: changing them changes the prediction.
    x2 = x.clone()
    x2[:, State.YAW_RATE] += 0.3
    assert not torch.allclose(model.step(x2, u)[:, State.YAW_RATE] - x2[:, State.YAW_RATE],
                              out[:, State.YAW_RATE] - x[:, State.YAW_RATE])
    fields = model.step_fields(tuple(x.unbind(-1)), tuple(u.unbind(-1)))
    assert torch.allclose(torch.stack(fields, -1), out, atol=1e-9)
    A, B = model.linearize(x, u)
    assert A.shape == (8, 7, 7) and B.shape == (8, 7, 2)


def test_a_kinematic_bundle_manifest_is_unchanged(tmp_path) -> None:
    path = save_bundle(ModelBundle("k", PARAMS), tmp_path / "k")
    manifest = json.loads((path / "manifest.json").read_text())
    assert "nominal" not in manifest and "single_track" not in manifest
    assert load_bundle(path).nominal == "kinematic" and load_bundle(path).state_dim == 5


def test_a_single_track_bundle_without_its_parameters_is_refused(tmp_path) -> None:
    path = save_bundle(dynamic_bundle("single_track"), tmp_path / "s")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["single_track"] = None
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="single_track parameters"):
        load_bundle(path)


def test_a_residual_on_dynamic_fields_needs_a_dynamic_nominal(tmp_path) -> None:
    path = save_bundle(dynamic_bundle("kinematic_dynamic_state"), tmp_path / "d")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["nominal"] = "kinematic"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="yaw_rate"):
        load_bundle(path)


def test_native_kernel_runs_both_dynamic_state_nominals() -> None:
    from controller.costs import TrackCost
    from controller.config import DaemonConfig
    from controller.native import supports
    from controller.track import load_track

    cost = TrackCost(DaemonConfig().cost, load_track("circle"), PARAMS, torch.float32)
    assert supports(dynamic_bundle("kinematic_dynamic_state").build(DT), cost) is None
    assert supports(dynamic_bundle("single_track").build(DT), cost) is None


def test_unmeasured_yaw_rate_and_slip_get_the_kinematic_estimate() -> None:
    import numpy as np

    x = np.array([0.0, 0.0, 0.05, 12.0, 0.3, np.nan, np.nan])
    assert fill_unmeasured(x, PARAMS)
    rate, slip = kinematic_yaw_rate_and_slip(0.05, 12.0, PARAMS)
    assert x[5] == pytest.approx(rate) and x[6] == pytest.approx(slip)
    assert rate == pytest.approx(12.0 * np.cos(slip) * np.tan(0.05) / PARAMS.wheelbase)
    measured = np.array([0.0, 0.0, 0.05, 12.0, 0.3, 0.1, 0.0])
    assert not fill_unmeasured(measured, PARAMS) and measured[5] == 0.1


def test_the_core_follows_a_reload_from_five_to_seven_fields_and_back() -> None:
    import numpy as np

    from controller.config import DaemonConfig
    from controller.core import ControlCore
    from controller.costs import TrackCost
    from controller.planners.mppi import MPPIConfig
    from controller.planners.registry import build_planner
    from controller.track import load_track, start_state

    track = load_track("circle")
    cost = TrackCost(DaemonConfig().cost, track, PARAMS, torch.float32)
    config = MPPIConfig(num_samples=64, horizon=10, backend="torch", compile=False)

    def planner_for(bundle: ModelBundle):
        return build_planner(config, bundle.build(DT), cost, PARAMS)

    core = ControlCore(planner_for(ModelBundle("k", PARAMS)), PARAMS, DT, 1.0)
    wire = np.full(7, np.nan)
    wire[:5] = start_state(track, 8.0).numpy()
    assert core.step(wire, 0.0).status == "ok" and core.state_dim == 5
    core.replace_planner(planner_for(dynamic_bundle("kinematic_dynamic_state")))
    assert core.state_dim == 7
    outcome = core.step(wire, 0.05)  # no yaw_rate/slip sent: the kinematic estimate fills them
    assert outcome.status == "ok" and np.isfinite(outcome.action).all()
    core.replace_planner(planner_for(ModelBundle("k", PARAMS)))
    assert core.state_dim == 5 and core.step(wire, 0.1).status == "ok"
