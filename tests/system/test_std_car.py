"""The daemon drives the STD car (tyres that saturate) round the circle at 10 m/s over the real
wire: the traction guard keeps it on its tyres, no recovery is needed, each lap is reported."""

from __future__ import annotations

import numpy as np
import pytest

from controller.track import load_track
from sim.cars import make_true_car, reference_lap_for
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, run_episode
from sim.remote import ControllerClient
from vehicle_models.params import load_params

PARAMS = load_params("passenger_car")


@pytest.mark.slow
def test_std_car_laps_the_circle_with_the_guard(start_daemon) -> None:
    daemon = start_daemon()
    track = load_track("circle")
    car = make_true_car("passenger_car", "std")
    x0 = np.zeros(7)
    x0[:5] = start_state(track, 5.0).numpy()  # the demo's start: the guard caps the launch
    with ControllerClient(daemon.endpoint, timeout_s=2.0) as client:
        client.reset()
        summary = run_episode(client, car, track, x0, EpisodeConfig(vehicle_width=PARAMS.width))
        stats = client.stats()
    assert summary.completed and summary.offtrack_s == 0.0, summary
    assert summary.mean_abs_lateral_m < 0.5
    assert stats["recoveries"] == 0 and stats["stops"] == 0
    assert len(summary.lap_times_s) == 1 and summary.lap_times_s[0] == pytest.approx(summary.lap_time_s)
    reference = reference_lap_for(track, PARAMS).time_s
    assert 1.0 < summary.lap_time_s / reference < 3.0  # 10 m/s against sqrt(mu g R) = 22 m/s
