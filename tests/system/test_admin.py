"""Control-message authorisation: reload takes only bundles under the model directory, and with
an admin endpoint, reload and resetting another car's session are taken only there."""

from __future__ import annotations

import stat
from pathlib import Path

from sim.remote import ControllerClient
from vehicle_models.bundle import ModelBundle, save_bundle
from vehicle_models.params import load_params
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS

STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}


def test_reload_outside_the_model_directory_is_refused(start_daemon, tmp_path: Path) -> None:
    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    params = load_params("passenger_car")
    save_bundle(ModelBundle("v1", params), models / "v1")
    crafted = save_bundle(ModelBundle("crafted", params), elsewhere / "crafted")
    (models / "link").symlink_to(crafted, target_is_directory=True)
    daemon = start_daemon([f"model.model_dir={models}"])
    with ControllerClient(daemon.endpoint, timeout_s=5.0) as client:
        for path in (str(crafted), str(models / ".." / "elsewhere" / "crafted"), str(models / "link"), str(models)):
            reply = client.reload(path)
            assert reply["type"] == "error" and reply["code"] == "forbidden", (path, reply)
            assert "not under the model directory" in reply["message"]
        assert client.reload(str(models / "v1"))["type"] == "ack"
        stats = client.stats()
    assert stats["errors_by_code"]["forbidden"] == 4 and stats["model"] == "v1"


def test_reload_of_a_path_without_a_model_directory_is_refused(start_daemon, tmp_path: Path) -> None:
    bundle = save_bundle(ModelBundle("v1", load_params("passenger_car")), tmp_path / "v1")
    daemon = start_daemon()
    with ControllerClient(daemon.endpoint, timeout_s=5.0) as client:
        reply = client.reload(str(bundle))
    assert reply["code"] == "forbidden" and "model.model_dir" in reply["message"]


def test_admin_requests_only_on_the_owner_only_admin_socket(start_daemon, tmp_path: Path) -> None:
    models = tmp_path / "models"
    save_bundle(ModelBundle("v1", load_params("passenger_car")), models / "v1")
    admin_path = tmp_path / "run" / "admin.sock"
    daemon = start_daemon([f"model.model_dir={models}", f"admin_bind=ipc://{admin_path}"])
    assert stat.S_IMODE(admin_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(admin_path.parent.stat().st_mode) == 0o700
    with (
        ControllerClient(daemon.endpoint, timeout_s=5.0) as car,
        ControllerClient(f"ipc://{admin_path}", timeout_s=5.0) as admin,
    ):
        assert car.step(1, 1.0, STATE, timeout_s=5.0).status == "ok"
        session = car.stats()["session"]
        refused = car.reload(str(models / "v1"))
        assert refused["code"] == "forbidden" and "admin endpoint" in refused["message"]
        assert admin.reload(str(models / "v1"))["type"] == "ack"
        reset = admin.reset(session=session)
        assert reset["type"] == "ack" and reset["session"] == session and reset["episode"] == 1
        assert admin.reset(session="nobody.1")["code"] == "unknown_session"
        assert admin.reset()["code"] == "missing_field"  # the admin endpoint drives no car
        assert admin.request({"type": "step", "seq": 1, "stamp": 1.0, "state": STATE})["code"] == "forbidden"
        assert car.stats()["episode"] == 1
        assert car.step(2, 0.5, STATE, timeout_s=5.0).status == "ok"  # its stamps started over


def test_a_bundle_whose_weights_hold_objects_is_refused_naming_the_file(tmp_path: Path) -> None:
    import hashlib
    import json
    import os

    import pytest
    import torch

    from vehicle_models.bundle import BundleError, load_bundle
    from vehicle_models.residual import ResidualConfig, ResidualEnsemble

    class Crafted:
        def __reduce__(self):
            return (os.getcwd, ())

    bundle = save_bundle(
        ModelBundle("v2", load_params("passenger_car"), ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(), seed=0)), tmp_path / "v2"
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    weights = bundle / manifest["residual"]["weights_file"]
    torch.save({"payload": Crafted()}, weights)
    manifest["residual"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()  # a crafted bundle is consistent
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as refused:
        load_bundle(bundle)
    message = str(refused.value)
    assert str(weights) in message and "never unpickled" in message and "getcwd" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
