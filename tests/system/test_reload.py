"""Hot reload: a new bundle is swapped in between steps; a damaged one is refused and the old
model keeps serving."""

from __future__ import annotations

import time
from pathlib import Path


from sim.remote import ControllerClient
from vehicle_models.bundle import ModelBundle, save_bundle
from vehicle_models.params import load_params
from vehicle_models.residual import ResidualConfig, ResidualEnsemble
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS

STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}


def wait_for(client: ControllerClient, predicate, timeout_s: float = 120.0) -> dict:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        stats = client.stats()
        if predicate(stats):
            return stats
        time.sleep(0.2)
    raise AssertionError(f"timed out; last stats {stats}")


def test_reload_swaps_good_bundles_and_refuses_bad_ones(start_daemon, tmp_path: Path) -> None:
    models = tmp_path / "models"
    params = load_params("passenger_car")
    save_bundle(ModelBundle("v1", params), models / "v1")
    daemon = start_daemon([f"model.model_dir={models}"])
    with ControllerClient(daemon.endpoint, timeout_s=5.0) as client:
        assert client.ping()["model"] == "v1"
        residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(), seed=0)
        save_bundle(ModelBundle("v2", params, residual), models / "v2")
        assert client.reload()["type"] == "ack"
        stamp = 0.0
        while client.stats()["model"] != "v2":  # the daemon keeps serving while it loads
            stamp += 0.05
            reply = client.step(int(stamp * 100), stamp, STATE, timeout_s=5.0)
            assert reply.status == "ok"
        stamp += 0.05
        assert client.step(int(stamp * 100), stamp, STATE, timeout_s=5.0).status == "ok"

        bad = save_bundle(ModelBundle("v3", params, ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(), seed=1)), models / "v3")
        (bad / "residual.pt").write_bytes(b"not a torch file")
        client.reload(str(bad))
        stats = wait_for(client, lambda s: s["reload_failures"] >= 1)
        assert stats["model"] == "v2" and stats["reloads"] == 1
        stamp += 0.05
        assert client.step(int(stamp * 100), stamp, STATE, timeout_s=5.0).status == "ok"
