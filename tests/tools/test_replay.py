"""Replay analysis: report and compare on real log files write the table and every figure;
the track comes from the log and a mismatching --track is refused; laps agree with the
simulator's; compare's figures share scales and keep legends off the data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from controller.track import Track, load_track
from controller.track.identity import describe
from controller.translog import TransitionLog, load_steps
from tools.replay import plots
from tools.replay.__main__ import main
from tools.replay.analysis import analyse

FIGURES = {"path_speed.png", "path_lateral.png", "lateral_speed_vs_distance.png", "actions.png",
           "latency_histogram.png", "prediction_error.png"}


def circle_log(directory: Path, offset: float, seconds: float = 40.0) -> None:
    """A car on the built-in circle (radius 50 m) at a constant lateral offset, 10 m/s; no track
    record (a log written before the daemon recorded its track)."""
    track = load_track("circle")
    radius, v, period = 50.0 - offset, 10.0, 0.05
    steer = math.atan(2.5 / radius)
    with TransitionLog(directory, flush_s=0.1) as log:
        for k in range(int(seconds / period)):
            phi = v * k * period / radius
            state = {"x": radius * math.sin(phi), "y": 50.0 - radius * math.cos(phi), "steer": steer, "v": v,
                     "yaw": phi}
            log.step({"episode": 0, "seq": k, "stamp": k * period, "received": 100.0 + k * period,
                      "replied": 100.002 + k * period, "state": state, "action": {"steer_rate": 0.0, "accel": 0.0},
                      "status": "ok", "solve_ms": 1.5, "planner": "mppi", "model": "kinematic"})
    assert track.length > 0


def centre_line_log(directory: Path, source: str, distance_m: float, v: float = 10.0, record: bool = True) -> Track:
    """A car on the centre line of ``source`` from s = 0 to ``distance_m``, sampled every 0.05 s,
    logged as the daemon does (with the track record first)."""
    track = load_track(source)
    period = 0.05
    s = np.arange(0.0, distance_m + 1e-9, v * period)
    closed_s = np.append(track.s, track.length)
    x = np.interp(s % track.length, closed_s, np.append(track.points[:, 0], track.points[0, 0]))
    y = np.interp(s % track.length, closed_s, np.append(track.points[:, 1], track.points[0, 1]))
    yaw = np.unwrap(np.arctan2(np.gradient(y), np.gradient(x)))
    with TransitionLog(directory, flush_s=0.1, track=describe(track, source) if record else None) as log:
        for k in range(len(s)):
            state = {"x": float(x[k]), "y": float(y[k]), "steer": 0.0, "v": v, "yaw": float(yaw[k])}
            log.step({"episode": 0, "seq": k, "stamp": k * period, "received": 100.0 + k * period,
                      "replied": 100.002 + k * period, "state": state, "action": {"steer_rate": 0.0, "accel": 0.0},
                      "status": "ok", "solve_ms": 1.5, "planner": "ilqr", "model": "kinematic"})
    return track


def test_report_and_compare(tmp_path: Path, capsys) -> None:
    circle_log(tmp_path / "a" / "logs", offset=0.5)
    circle_log(tmp_path / "b" / "logs", offset=0.1)
    assert main(["report", str(tmp_path / "a" / "logs"), "--track", "circle", "--out", str(tmp_path / "ra")]) == 0
    assert FIGURES <= {p.name for p in (tmp_path / "ra").iterdir()}
    summary = json.loads((tmp_path / "ra" / "summary.json").read_text())["a"]
    assert summary["laps"] == 1
    assert abs(summary["mean_abs_lateral_m"] - 0.5) < 0.01
    assert abs(summary["latency_ms_p50"] - 2.0) < 0.01
    assert "does not record its track" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a" / "logs"), str(tmp_path / "b" / "logs"), "--track", "circle",
                 "--label", "wide", "--label", "tight", "--out", str(tmp_path / "cmp")]) == 0
    both = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert both["tight"]["mean_abs_lateral_m"] < both["wide"]["mean_abs_lateral_m"]
    out = capsys.readouterr().out
    assert "mean_abs_lateral_m" in out and "tight" in out


def test_report_uses_the_track_the_log_records(tmp_path: Path, capsys) -> None:
    track = centre_line_log(tmp_path / "eight" / "logs", "figure_eight", 200.0)
    assert main(["report", str(tmp_path / "eight" / "logs"), "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())["eight"]
    assert summary["track"] == track.name and summary["mean_abs_lateral_m"] < 0.05, summary


def test_a_mismatching_track_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    centre_line_log(tmp_path / "eight" / "logs", "figure_eight", 200.0)
    logs = str(tmp_path / "eight" / "logs")
    assert main(["report", logs, "--track", "circle", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--track circle is not the track" in err and "figure_eight" in err
    assert main(["report", logs, "--track", "figure_eight", "--out", str(tmp_path / "r")]) == 0
    assert main(["report", logs, "--track", "circle", "--force-track", "--out", str(tmp_path / "r")]) == 0
    assert "analysing on --track as forced" in capsys.readouterr().err


def test_a_log_without_a_track_record_needs_track(tmp_path: Path, capsys) -> None:
    circle_log(tmp_path / "old" / "logs", offset=0.0, seconds=5.0)
    assert main(["report", str(tmp_path / "old" / "logs"), "--out", str(tmp_path / "r")]) == 2
    assert "pass --track" in capsys.readouterr().err


def test_the_track_record_rebuilds_a_track_file_that_is_gone(tmp_path: Path) -> None:
    source = tmp_path / "mine.csv"
    load_track("random:3").to_csv(source)
    centre_line_log(tmp_path / "run" / "logs", str(source), 250.0)
    source.unlink()
    assert main(["report", str(tmp_path / "run" / "logs"), "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())["run"]
    assert summary["track"] == "mine" and summary["mean_abs_lateral_m"] < 0.05


def test_a_lap_the_simulator_completes_is_a_lap(tmp_path: Path) -> None:
    """The simulator ends on the state that completes the lap and never sends it: the last
    logged state is up to one period short of the line."""
    track = load_track("circle")
    samples = math.ceil(track.length / 0.5)
    v = (track.length - 0.2) / (samples - 1) / 0.05  # about 10 m/s; the last state 0.2 m short
    centre_line_log(tmp_path / "logs", "circle", track.length - 0.2, v=v)
    run = analyse("lap", load_steps(tmp_path / "logs"), track)
    assert run.summary["laps"] == 1 and len(run.lap_times) == 1
    assert run.lap_times[0] == pytest.approx(track.length / v, abs=0.01)
    short = tmp_path / "short"
    centre_line_log(short, "circle", 0.2 * track.length)
    partial = analyse("partial", load_steps(short), track)
    assert partial.summary["laps"] == 0 and partial.lap_times == []
    assert partial.summary["laps_driven"] == pytest.approx(0.2, abs=0.01)


def test_compare_figures_share_the_colour_scale_and_keep_legends_off_the_data(tmp_path: Path) -> None:
    track = load_track("circle")
    runs = []
    for name, v in (("slow", 6.0), ("fast", 12.0)):
        centre_line_log(tmp_path / name, "circle", 100.0, v=v)
        steps = load_steps(tmp_path / name)
        runs.append((steps, analyse(name, steps, track)))
    fig = plots.path_map_figure(runs, [track, track], "speed")
    limits = {(c.norm.vmin, c.norm.vmax) for ax in fig.axes if ax.get_title() for c in ax.collections}
    assert limits == {(6.0, 12.0)}
    fig = plots.two_panel_figure(runs, lambda s, r: s.stamp, lambda s, r: s.actions[:, 0],
                                 lambda s, r: s.actions[:, 1], ("a", "b", "t"))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["slow", "fast"]


def test_clear_error_for_missing_logs(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err
