"""bench/race.py end to end: a real daemon subprocess drives the STD car; one record per
(track, planner, rung) with the fields issue 10 lists, printed as a table and written as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("track", "planner", "rung", "model", "lap_time_s", "ref_lap_s", "ratio", "offtrack_steps", "spins",
          "max_abs_lateral_m", "solve_p99_ms")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_race_bench_records_a_partial_lap_at_a_pace(tmp_path: Path) -> None:
    out = tmp_path / "race.json"
    run = subprocess.run(
        [sys.executable, "bench/race.py", "--tracks", "circle", "--planners", "ilqr", "--laps", "0.5",
         "--pace", "0.4", "--quiet", "--out", str(tmp_path / "logs"), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (record,) = json.loads(out.read_text())
    assert set(FIELDS) <= set(record)
    assert (record["track"], record["planner"], record["rung"], record["model"]) == ("circle", "ilqr", 0, "kinematic")
    assert record["pace"] == 0.4 and record["completed"], record
    assert record["offtrack_steps"] == 0 and record["spins"] == 0
    # half a lap of the 50 m circle at 0.4 mu g is compared with half the reference lap
    assert record["ratio"] == pytest.approx(record["lap_time_s"] / record["ref_lap_s"])
    assert 1.0 < record["ratio"] < 2.5, record
    assert "| circle | ilqr | 0 | 0.40 | kinematic |" in run.stdout
