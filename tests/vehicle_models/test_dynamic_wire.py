"""A dynamic-state bundle over the real wire: a daemon subprocess loads it, plans on the
7-field native kernel (``kinematic_dynamic_state``, or ``single_track``'s own build), builds the 7-field state from the wire (estimating what the
car does not send), compensates the dead time with the same model, and drives the STD car."""

from __future__ import annotations

import numpy as np
import pytest

from controller.track import load_track
from sim.cars import make_true_car
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, run_episode
from sim.remote import ControllerClient
from tests.system.daemons import FAST, DaemonProcess
from tests.vehicle_models.test_dynamic_nominal import dynamic_bundle
from vehicle_models.bundle import save_bundle
from vehicle_models.params import load_params

PARAMS = load_params("passenger_car")
TRACK = "random:3"


@pytest.fixture
def daemon_with(tmp_path):
    started: list[DaemonProcess] = []

    def start(nominal: str, *overrides: str) -> DaemonProcess:
        bundle = save_bundle(dynamic_bundle(nominal), tmp_path / nominal)
        d = DaemonProcess(tmp_path, [*FAST, f"model.bundle={bundle}", f"track={TRACK}", *overrides])
        started.append(d)
        d.wait_ready()
        return d

    yield start
    for d in started:
        d.stop()


def daemon_output(d: DaemonProcess) -> str:
    d.output.flush()
    return open(d.output.name).read()


@pytest.mark.slow
@pytest.mark.parametrize("nominal", ["kinematic_dynamic_state", "single_track"])
def test_a_dynamic_bundle_drives_the_std_car_on_a_generated_track(daemon_with, nominal: str) -> None:
    daemon = daemon_with(nominal, "dead_time=0.05", "stale_after_s=60")
    track = load_track(TRACK)
    car = make_true_car("passenger_car", "std", dead_time=0.05)
    x0 = np.zeros(7)
    x0[:5] = start_state(track, 5.0).numpy()
    config = EpisodeConfig(vehicle_width=PARAMS.width, max_steps=60)
    with ControllerClient(daemon.endpoint, timeout_s=5.0) as client:
        client.reset()
        summary = run_episode(client, car, track, x0, config)
    assert summary.steps == 60 and summary.end_reason == "step_limit", summary
    assert summary.errors == 0 and summary.stops == 0 and summary.offtrack_s == 0.0
    assert summary.mean_speed_mps * 60 * 0.05 > 12.0  # it drove, not stood
    assert summary.max_abs_lateral_m < 1.5
    out = daemon_output(daemon)
    # backend auto: the kernel runs both nominals
    assert "on the torch backend" not in out
    assert "ready after" in out and "(backend native)" in out


@pytest.mark.slow
def test_a_car_that_sends_no_yaw_rate_or_slip_gets_the_kinematic_estimate(daemon_with) -> None:
    daemon = daemon_with("kinematic_dynamic_state")
    x = start_state(load_track(TRACK), 8.0).numpy()
    state = {"x": float(x[0]), "y": float(x[1]), "yaw": float(x[4]), "v": 8.0, "steer": 0.0}
    with ControllerClient(daemon.endpoint, timeout_s=5.0) as client:
        client.reset()
        replies = [client.step(seq, seq * 0.05, state) for seq in range(5)]
    assert all(r.status == "ok" and np.isfinite(r.action).all() for r in replies), replies
    assert daemon_output(daemon).count("sends no yaw_rate/slip") == 1
