"""Model bundles: round trip, atomic write, and a clear error for each kind of damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vehicle_models import load_params
from vehicle_models.bundle import BundleError, ModelBundle, load_bundle, save_bundle
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS, SemiParametricModel


def _bundle(ensemble_size: int = 2) -> ModelBundle:
    residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(ensemble_size=ensemble_size, hidden=(16, 16)), seed=1)
    with torch.no_grad():
        residual.input_std.fill_(2.0)
        residual.output_mean.fill_(0.01)
    return ModelBundle(
        version="v7-test",
        params=load_params("passenger_car", steer_gain=0.9),
        residual=residual,
        data_digest="sha256:abc",
        fit_metrics={"rmse_pos_1s_m": 0.12},
        parent_version="v6",
    )


def test_round_trip_preserves_the_model(tmp_path: Path) -> None:
    original = _bundle()
    path = save_bundle(original, tmp_path / "model")
    loaded = load_bundle(path)
    assert loaded.version == "v7-test" and loaded.kind == "semi"
    assert loaded.params == original.params
    assert loaded.fit_metrics == {"rmse_pos_1s_m": 0.12} and loaded.parent_version == "v6"
    a = original.build(0.05, dtype=torch.float64)
    b = loaded.build(0.05, dtype=torch.float64)
    assert isinstance(b, SemiParametricModel) and b.ensemble_size == 2
    x = torch.randn(9, 5, dtype=torch.float64)
    u = torch.randn(9, 2, dtype=torch.float64) * 0.2
    original.residual.double()
    loaded.residual.double()
    assert torch.equal(a.with_dt(0.05).step(x, u), b.with_dt(0.05).step(x, u))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left behind


def test_kinematic_only_bundle(tmp_path: Path) -> None:
    path = save_bundle(ModelBundle(version="k1", params=load_params("f1tenth")), tmp_path / "k")
    loaded = load_bundle(path)
    assert loaded.kind == "kinematic" and loaded.residual is None
    assert not (path / "residual.pt").exists()


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    save_bundle(_bundle(), tmp_path / "m")
    with pytest.raises(BundleError, match="exists"):
        save_bundle(_bundle(), tmp_path / "m")
    save_bundle(_bundle(), tmp_path / "m", overwrite=True)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "manifest.json").write_text("[1, 2]"), "JSON object"),
        (lambda p: _edit(p, schema_version=99), "schema version 99"),
        (lambda p: _edit(p, kind="neural"), "malformed"),
        (lambda p: _edit(p, surprise=1), "malformed"),
        (lambda p: (p / "residual.pt").unlink(), "residual.pt is missing"),
        (lambda p: (p / "residual.pt").write_bytes(b"garbage"), "checksum mismatch"),
        (lambda p: _edit(p, residual_config={"hidden": [8, 8], "activation": "silu", "ensemble_size": 2}), "do not match"),
        (lambda p: _edit(p, residual_fields=["steer", "warp"]), "unknown state field 'warp'"),
    ],
)
def test_damaged_bundles_fail_clearly(tmp_path: Path, damage, message: str) -> None:
    path = save_bundle(_bundle(), tmp_path / "m")
    damage(path)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_non_finite_weights_are_rejected(tmp_path: Path) -> None:
    bundle = _bundle()
    with torch.no_grad():
        bundle.residual.weights[0][0, 0, 0] = float("nan")
    path = save_bundle(bundle, tmp_path / "m")
    with pytest.raises(BundleError, match="NaN"):
        load_bundle(path)


def _edit(path: Path, residual_config=None, residual_fields=None, **fields) -> None:
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(fields)
    if residual_config is not None:
        manifest["residual"]["config"] = residual_config
    if residual_fields is not None:
        manifest["residual"]["input_fields"] = residual_fields
    manifest_path.write_text(json.dumps(manifest))
