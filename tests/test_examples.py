"""The scripts under examples/ run as a user runs them (a subprocess each) and say what docs/api.md
says they say."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from controller.translog import TransitionLog

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a torch import per script


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("planner", ["mppi", "ilqr"])
def test_plan_on_track(planner: str) -> None:
    out = run("plan_on_track.py", "--planner", planner)
    assert f"{planner} on figure_eight: first action" in out and "plan of 30 steps" in out


def test_control_core_in_process() -> None:
    out = run("control_core.py", "--steps", "120")
    assert "120 steps of 0.05 s on circle with mppi: statuses {'ok': 120}" in out, out
    lateral = float(out.split("mean |lateral| ")[1].split(" m")[0])
    assert lateral < 0.3


def test_load_bundle() -> None:
    out = run("load_bundle.py")
    assert "bundle example-1" in out and "kind semi" in out and len(out.splitlines()) == 5, out


def test_log_to_dataframe(tmp_path: Path) -> None:
    with TransitionLog(tmp_path / "logs") as log:
        for k in range(50):
            log.step({"episode": 0, "seq": k, "stamp": k * 0.05, "received": 10 + k * 0.05,
                      "replied": 10.001 + k * 0.05,
                      "state": {"x": k * 0.5, "y": 0.0, "steer": 0.0, "v": 10.0, "yaw": 0.0, "yaw_rate": math.nan},
                      "action": {"steer_rate": 0.0, "accel": 0.0}, "status": "ok" if k % 10 else "fallback",
                      "solve_ms": 2.0, "planner": "mppi", "model": "kinematic"})
    out = run("log_to_dataframe.py", str(tmp_path / "logs"))
    assert out.startswith("50 steps, 1 episode(s)") and "fallback" in out and "mean speed 10.00 m/s" in out, out
