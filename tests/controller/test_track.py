"""Tracks: TUM CSV reading, generated circuits, projection against a brute-force oracle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from controller.track import Track, TrackFormatError, load_track, speed_profile
from controller.track import tum_csv
from tests.shared_data import shared_track

REAL_TRACKS = {"Monza": 5.8e3, "Spa": 7.0e3, "Zandvoort": 4.3e3}


def brute_force_distance(track: Track, p: np.ndarray, near_index: np.ndarray, reach: int) -> np.ndarray:
    """Distance from each point to the polyline, over the segments within ``reach`` of its index."""
    a = track.points
    d = np.roll(a, -1, 0) - a
    t = np.clip(((p[:, None, :] - a) * d).sum(-1) / (d * d).sum(-1), 0, 1)
    o = p[:, None, :] - a - t[..., None] * d
    dist = np.hypot(o[..., 0], o[..., 1])
    n = track.num_points
    gap = np.abs(np.arange(n)[None] - near_index[:, None])
    dist[np.minimum(gap, n - gap) > reach] = np.inf
    return dist.min(1)


def points_on_track(track: Track, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = rng.integers(0, track.num_points, count)
    heading = track.heading[k]
    half = np.minimum(track.width_left[k], track.width_right[k])
    offset = rng.uniform(-1, 1, count) * half
    normal = np.column_stack([-np.sin(heading), np.cos(heading)])
    return track.points[k] + offset[:, None] * normal, heading, k


@pytest.mark.parametrize("name", ["circle", "figure_eight", "random:7", *REAL_TRACKS])
def test_projection_matches_brute_force(name: str) -> None:
    track = load_track(shared_track(name) if name in REAL_TRACKS else name)
    points, heading, k = points_on_track(track, 1500, seed=1)
    proj = track.lookup(torch.float64).project(
        torch.tensor(points[:, 0]), torch.tensor(points[:, 1]), torch.tensor(heading)
    )
    oracle = brute_force_distance(track, points, k, reach=40)
    # Each point is projected onto the line of its cell's segment, which near a joint may be
    # the neighbour of the nearest one: off by (distance along) x (turn), millimetres here.
    np.testing.assert_allclose(np.abs(proj.lateral.numpy()), oracle, atol=1e-2)
    # Arc length within a segment of the generating point's.
    ds = (proj.s.numpy() - track.s[k] + track.length / 2) % track.length - track.length / 2
    assert np.abs(ds).max() < track.half_width_max() + 2.0


def test_lateral_sign_heading_and_curvature_on_a_circle() -> None:
    track = load_track("circle")  # radius 50, counter-clockwise, centre (0, 50)
    assert track.length == pytest.approx(2 * math.pi * 50, rel=1e-6)
    np.testing.assert_allclose(track.curvature, 1 / 50, rtol=1e-4)
    phi = torch.linspace(0, 2 * math.pi, 50, dtype=torch.float64)[:-1]
    radius = torch.full_like(phi, 48.0)  # 2 m towards the centre: left of the centre line
    x, y = radius * torch.sin(phi), 50 - radius * torch.cos(phi)
    proj = track.lookup(torch.float64).project(x, y, phi)
    # The polyline of 1 m chords sags by spacing^2 / (8 R) = 2.5 mm.
    np.testing.assert_allclose(proj.lateral.numpy(), 2.0, atol=3e-3)
    ds = (proj.s.numpy() - 50 * phi.numpy() + track.length / 2) % track.length - track.length / 2
    np.testing.assert_allclose(ds, 0.0, atol=3e-2)
    np.testing.assert_allclose(torch.cos(proj.heading - phi).numpy(), 1.0, atol=1e-4)
    np.testing.assert_allclose(proj.curvature.numpy(), 1 / 50, rtol=1e-3)


def test_heading_keeps_the_driven_branch_at_the_figure_eight_crossing() -> None:
    track = load_track("figure_eight")
    lookup = track.lookup(torch.float64)
    crossing = np.flatnonzero(np.hypot(*track.points.T) < 1.0)
    first, second = crossing[0], crossing[-1]
    assert abs(first - second) > track.num_points // 4  # two branches
    for i in (first, second):
        yaw = float(track.heading[i])
        x = torch.tensor([track.points[i, 0] + 0.3 * math.cos(yaw)], dtype=torch.float64)
        y = torch.tensor([track.points[i, 1] + 0.3 * math.sin(yaw)], dtype=torch.float64)
        proj = lookup.project(x, y, torch.tensor([yaw], dtype=torch.float64))
        assert math.cos(float(proj.heading[0]) - yaw) > 0.99
        assert abs(float(proj.s[0]) - track.s[i]) < 2.0


def test_interpolate_and_slope_are_periodic() -> None:
    track = load_track("random:2")
    lookup = track.lookup(torch.float64)
    table = torch.tensor(np.sin(2 * np.pi * track.s / track.length))
    s = torch.tensor([0.0, track.length / 4, track.length - 1e-9, track.length + 10.0])
    np.testing.assert_allclose(
        lookup.interpolate(table, s).numpy(), np.sin(2 * np.pi * s.numpy() / track.length), atol=1e-4
    )
    slope = lookup.slope(table, torch.tensor([0.0]))
    assert float(slope[0]) == pytest.approx(2 * np.pi / track.length, rel=1e-3)


def test_random_circuit_is_seeded_and_smooth() -> None:
    a, b, c = load_track("random:11"), load_track("random:11"), load_track("random:12")
    np.testing.assert_array_equal(a.points, b.points)
    assert a.points.shape != c.points.shape or not np.allclose(a.points, c.points)
    assert np.abs(a.curvature).max() <= 1 / 25


@pytest.mark.parametrize("name,length", list(REAL_TRACKS.items()))
def test_real_tracks_load(name: str, length: float) -> None:
    track = load_track(shared_track(name))
    assert track.length == pytest.approx(length, rel=0.03)
    assert track.spacing == pytest.approx(1.0, rel=0.01)


def test_csv_roundtrip(tmp_path: Path) -> None:
    track = load_track("random:5")
    track.to_csv(tmp_path / "t.csv")
    again = load_track(tmp_path / "t.csv")
    assert again.length == pytest.approx(track.length, rel=1e-4)
    assert again.name == "t"


@pytest.mark.parametrize(
    "text,line,reason",
    [
        ("", None, "empty file"),
        ("x,y\n1,2\n", 1, "missing header"),
        ("# x,y,w_left,w_right\n", 1, "unknown header"),
        (tum_csv.HEADER + "\n0,0,1,1\n1,0,1\n", 3, "expected 4 columns"),
        (tum_csv.HEADER + "\n0,0,1,1\n1,zero,1,1\n", 3, "'zero' is not a number"),
        (tum_csv.HEADER + "\n0,0,1,1\n1,0,nan,1\n", 3, "not finite"),
        (tum_csv.HEADER + "\n0,0,1,1\n1,0,-1,1\n", 3, "must be positive"),
        (tum_csv.HEADER + "\n0,0,1,1\n0,0,1,1\n", 3, "repeats the point"),
        (tum_csv.HEADER + "\n0,0,1,1\n1,0,1,1\n1,1,1,1\n", 4, "only 3 distinct points"),
    ],
)
def test_malformed_track_files_are_rejected_with_line(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TrackFormatError) as err:
        load_track(path)
    assert err.value.line == line
    assert reason in str(err.value)
    assert "bad.csv" in str(err.value)


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TrackFormatError, match="not a UTF-8 text file"):
        load_track(path)


def test_unknown_track_name() -> None:
    with pytest.raises(FileNotFoundError, match="neither a built-in"):
        load_track("nurburgring")
    with pytest.raises(ValueError, match="whole number"):
        load_track("random:x")


def test_speed_profile_caps_and_limits_acceleration() -> None:
    track = load_track("figure_eight")
    v = speed_profile(track, target_speed=20.0, max_lateral_accel=4.0, accel=2.0, decel=4.0)
    cap = np.sqrt(4.0 / np.maximum(np.abs(track.curvature), 1e-9))
    assert (v <= np.minimum(20.0, cap) + 1e-9).all()
    dv2 = np.diff(np.append(v, v[0]) ** 2) / track.spacing
    assert dv2.max() <= 2 * 2.0 + 1e-6 and dv2.min() >= -2 * 4.0 - 1e-6
    assert v.max() == pytest.approx(20.0)
