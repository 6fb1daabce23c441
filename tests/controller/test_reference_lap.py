"""The reference lap time: closed forms on a circle and a straight, friction circle respected,
and the figures issue 10 gives for the real tracks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from controller.track import Track, circle, load_track
from controller.track.reference_lap import GRAVITY, drive_limit, reference_lap, smoothed_curvature
from tests.shared_data import shared_track


@pytest.mark.parametrize("radius, mu, v_max", [(50.0, 1.0, 50.8), (120.0, 0.8, 50.8), (50.0, 1.0, 15.0)])
def test_circle_lap_is_its_closed_form(radius: float, mu: float, v_max: float) -> None:
    track = circle(radius)
    lap = reference_lap(track, mu=mu, v_max=v_max)
    speed = min(v_max, math.sqrt(mu * GRAVITY * radius))
    assert lap.time_s == pytest.approx(2 * math.pi * radius / speed, rel=1e-3)
    np.testing.assert_allclose(lap.speed, speed, rtol=1e-3)


def test_smoothing_leaves_a_circle_alone() -> None:
    track = circle(50.0)
    np.testing.assert_allclose(smoothed_curvature(track, 15.0), 1 / 50.0, rtol=1e-4)
    np.testing.assert_allclose(smoothed_curvature(track, 0.0), track.curvature)


def test_long_straight_accelerates_on_commonroads_power_limit() -> None:
    """A 2 km straight closed by two tight hairpins: the speed along the straight follows
    v dv/ds = a_max v_switch / v above v_switch, i.e. v^3 grows by 3 a_max v_switch per metre."""
    straight, radius = 2000.0, 15.0
    phi = np.linspace(-math.pi / 2, math.pi / 2, 60)
    right = np.column_stack([straight + radius * np.cos(phi), radius * (1 + np.sin(phi))])
    top = np.column_stack([np.linspace(straight, 0, 400, endpoint=False)[1:], np.full(399, 2 * radius)])
    left = np.column_stack([-radius * np.cos(phi), radius * (1 - np.sin(phi))])
    bottom = np.column_stack([np.linspace(0, straight, 400, endpoint=False)[1:], np.zeros(399)])
    track = Track.from_centre_line(np.vstack([bottom, right, top, left]), 4.0, 4.0)
    lap = reference_lap(track, smoothing_m=0.0)
    apex = math.sqrt(GRAVITY * radius)
    assert lap.speed.min() == pytest.approx(apex, rel=0.1)  # the spline overshoots at the joins
    # Out of the hairpin onto the bottom straight, below v_max: v^3 - v0^3 = 3 a_max v_switch ds.
    s0, s1 = 60.0, 300.0
    i0, i1 = (int(np.searchsorted(track.s, s)) for s in (s0, s1))
    assert abs(track.curvature[i0:i1]).max() < 1e-3
    growth = lap.speed[i1] ** 3 - lap.speed[i0] ** 3
    assert growth == pytest.approx(3 * 11.5 * 7.319 * (track.s[i1] - track.s[i0]), rel=0.01)


def test_the_profile_stays_inside_the_friction_circle_and_the_drive_limit() -> None:
    track = load_track("random:3")
    mu = 0.9
    lap = reference_lap(track, mu=mu)
    v, kappa, ds = lap.speed, lap.curvature, track.spacing
    v_next = np.roll(v, -1)
    accel = (v_next**2 - v**2) / (2 * ds)
    lateral = v**2 * kappa
    grip = mu * GRAVITY
    assert (lateral <= grip * (1 + 1e-9)).all()
    assert (accel <= np.sqrt(np.maximum(grip**2 - lateral**2, 0)) + 1e-6).all()
    assert (accel <= drive_limit(v, 11.5, 7.319) + 1e-6).all()
    braking = -(v**2 - np.roll(v, 1) ** 2) / (2 * ds)  # from k-1 to k, checked at k
    assert (braking <= np.sqrt(np.maximum(grip**2 - lateral**2, 0)) + 1e-6).all()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        reference_lap(circle(), mu=0.0)


ISSUE_FIGURES_S = {"Monza": 156, "Spa": 204, "Silverstone": 182, "Zandvoort": 141, "Hockenheim": 145}


@pytest.mark.parametrize("name", sorted(ISSUE_FIGURES_S))
def test_real_tracks_are_near_the_issues_figures(name: str) -> None:
    lap = reference_lap(load_track(shared_track(name)))
    # The issue smoothed its centre line its own way ("lightly"): within 3 %.
    assert lap.time_s == pytest.approx(ISSUE_FIGURES_S[name], rel=0.03)


def test_drive_and_brake_caps_bound_the_profile_and_slow_the_lap() -> None:
    """A speed reference the car can follow: driving and braking capped at what one axle
    transmits, on top of the g-g circle."""
    track = load_track("random:3")
    free = reference_lap(track, mu=0.9)
    capped = reference_lap(track, mu=0.9, drive_max=2.5, brake_max=4.0)
    v, ds = capped.speed, track.spacing
    accel = (np.roll(v, -1) ** 2 - v**2) / (2 * ds)
    assert accel.max() <= 2.5 + 1e-6 and -accel.min() <= 4.0 + 1e-6
    free_accel = (np.roll(free.speed, -1) ** 2 - free.speed**2) / (2 * ds)
    assert free_accel.max() > 3.0 and -free_accel.min() > 4.5  # the caps bind here
    assert capped.time_s > free.time_s
    assert (capped.speed <= free.speed + 1e-9).all()
    # A circle has nothing to brake for: the caps leave its closed form alone.
    assert reference_lap(circle(50.0), brake_max=1.0, drive_max=1.0).time_s == pytest.approx(
        reference_lap(circle(50.0)).time_s)
    with pytest.raises(ValueError):
        reference_lap(track, brake_max=0.0)


def test_the_cost_speed_reference_takes_the_caps() -> None:
    from controller.costs import CostConfig, TrackCost
    from vehicle_models import load_params

    track = load_track("random:3")
    params = load_params("passenger_car")
    config = CostConfig(speed_reference="reference_lap", pace=0.9, target_speed=40.0, drive_max=2.5, brake_max=3.0)
    v = TrackCost(config, track, params, dtype=torch.float64).speed_table.numpy()
    accel = (np.roll(v, -1) ** 2 - v**2) / (2 * track.spacing)
    assert accel.max() <= 2.5 + 1e-6 and -accel.min() <= 3.0 + 1e-6
    free = TrackCost(config.model_copy(update={"drive_max": None, "brake_max": None}), track, params, dtype=torch.float64)
    assert (v <= free.speed_table.numpy() + 1e-9).all() and v.sum() < free.speed_table.numpy().sum()
