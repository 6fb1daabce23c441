"""The minimum-curvature racing line: its closed form on a circle, bounds, and a faster
reference lap on a generated and a real track; the cost that tracks it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from controller.costs import CostConfig, TrackCost
from controller.track import Track, circle, load_track, random_circuit
from controller.track.racing_line import min_curvature_line, min_curvature_offsets
from controller.track.reference_lap import reference_lap, smoothed_curvature
from tests.shared_data import shared_track
from vehicle_models.layout import State
from vehicle_models.params import load_params


@pytest.mark.parametrize("radius, width, margin", [(50.0, 8.0, 1.0), (80.0, 12.0, 2.0)])
def test_on_a_circle_the_line_is_the_widest_circle(radius: float, width: float, margin: float) -> None:
    line = min_curvature_line(circle(radius, width), margin)
    outer = radius + 0.5 * width - margin
    np.testing.assert_allclose(1.0 / line.curvature, outer, rtol=2e-3)
    np.testing.assert_allclose(line.width_right, margin, atol=2e-3)  # a left turn: the outside is right
    np.testing.assert_allclose(line.width_left, width - margin, atol=2e-3)


def test_the_line_stays_between_the_edges_and_is_straighter_and_faster() -> None:
    track = random_circuit(3)
    margin = 1.3
    alpha = min_curvature_offsets(track, margin)
    assert np.all(alpha <= track.width_left - margin + 1e-6)
    assert np.all(-alpha <= track.width_right - margin + 1e-6)
    line = min_curvature_line(track, margin)
    assert np.abs(smoothed_curvature(line, 15.0)).max() < 0.9 * np.abs(smoothed_curvature(track, 15.0)).max()
    assert reference_lap(line).time_s < 0.97 * reference_lap(track).time_s


def test_a_track_narrower_than_the_margins_keeps_the_middle() -> None:
    base = circle(60.0, 6.0)
    shifted = Track.from_centre_line(base.points, base.width_left + 1.0, base.width_right - 1.0)
    alpha = min_curvature_offsets(shifted, margin=5.0)
    np.testing.assert_allclose(alpha, 1.0, atol=1e-6)  # 1 m left of the old centre: the middle


def test_real_track_line_is_a_few_percent_faster() -> None:
    track = load_track(shared_track("Zandvoort"))
    line = min_curvature_line(track, 1.337)
    ratio = reference_lap(line).time_s / reference_lap(track).time_s
    assert 0.90 < ratio < 0.98, ratio  # measured 0.961 (docs/racing.md)


def test_the_cost_measures_from_the_line_when_asked() -> None:
    track = random_circuit(3)
    params = load_params("passenger_car")
    cost = TrackCost(CostConfig(line="min_curvature", speed_reference="reference_lap", target_speed=50.0),
                     track, params, dtype=torch.float64)
    centre = TrackCost(CostConfig(speed_reference="reference_lap", target_speed=50.0), track, params,
                       dtype=torch.float64)
    assert cost.track is not track and cost.track.length != pytest.approx(track.length, rel=1e-4)
    # On the line, 10 m in: zero lateral error in the line's cost, not in the centre line's.
    k = 10
    state = torch.zeros(1, 5, dtype=torch.float64)
    state[0, State.X], state[0, State.Y] = map(float, cost.track.points[k])
    state[0, State.YAW] = float(cost.track.heading[k])
    actions = torch.zeros(1, 2, dtype=torch.float64)
    assert abs(float(cost.features(state, actions).lateral[0])) < 1e-3
    offset = abs(float(centre.features(state, actions).lateral[0]))
    assert offset > 0.1
    # The speed reference follows the line's (gentler) curvature: a faster lap.
    lap = lambda c: float(torch.sum(c.track.spacing / c.speed_table))  # noqa: E731
    assert lap(cost) < lap(centre)
