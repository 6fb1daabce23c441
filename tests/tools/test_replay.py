"""Replay analysis: report and compare on real log files write the table and every figure."""

from __future__ import annotations

import json
import math
from pathlib import Path


from controller.track import load_track
from controller.translog import TransitionLog
from tools.replay.__main__ import main

FIGURES = {"path_speed.png", "path_lateral.png", "lateral_speed_vs_distance.png", "actions.png",
           "latency_histogram.png", "prediction_error.png"}


def circle_log(directory: Path, offset: float, seconds: float = 40.0) -> None:
    """A car on the built-in circle (radius 50 m) at a constant lateral offset, 10 m/s."""
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


def test_report_and_compare(tmp_path: Path, capsys) -> None:
    circle_log(tmp_path / "a" / "logs", offset=0.5)
    circle_log(tmp_path / "b" / "logs", offset=0.1)
    assert main(["report", str(tmp_path / "a" / "logs"), "--track", "circle", "--out", str(tmp_path / "ra")]) == 0
    assert FIGURES <= {p.name for p in (tmp_path / "ra").iterdir()}
    summary = json.loads((tmp_path / "ra" / "summary.json").read_text())["a"]
    assert summary["laps"] == 1
    assert abs(summary["mean_abs_lateral_m"] - 0.5) < 0.01
    assert abs(summary["latency_ms_p50"] - 2.0) < 0.01
    assert main(["compare", str(tmp_path / "a" / "logs"), str(tmp_path / "b" / "logs"), "--track", "circle",
                 "--out", str(tmp_path / "cmp")]) == 0
    both = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert both["b"]["mean_abs_lateral_m"] < both["a"]["mean_abs_lateral_m"]
    assert "mean_abs_lateral_m" in capsys.readouterr().out


def test_clear_error_for_missing_logs(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err
