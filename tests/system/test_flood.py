"""bench/loop.py's flood rows at a short length: another local process floods the daemon while
a car drives at 20 Hz in real time; the car keeps being served on time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.system.daemons import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_loop", ROOT / "bench" / "loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_flood_from_another_process_does_not_make_the_car_late(tmp_path: Path) -> None:
    bench = load_bench()
    light = ["control_period=0.05", "planner.num_samples=128", "planner.horizon=20", "planner.compile=false", "track=random:0"]
    rows = bench.flood(tmp_path, seconds=3.0, threads=1, overrides=light)
    bench.print_flood(rows, 3.0)
    alone, flooded = rows["alone"], rows["flood"]
    assert flooded["flood_sent"] > 1000 and flooded["flood_dropped"] > 0  # it was a flood, and shed
    # Once caught, the flooder's messages are shed undecoded, not answered one by one (most of
    # what it sent is still in the kernel's buffers when it stops: it is never read at all).
    answered = sum(flooded["errors_by_code"].values())
    assert 10 * answered < flooded["flood_dropped"], rows
    assert flooded["steps"] == alone["steps"] == 60
    assert flooded["errors_by_code"].get("busy", 0) > 0  # the flooder never took the car's place
    # Zero is the target (bench/loop.py reports it). Replies over 50 ms (late) or 100 ms
    # (timeouts) also come from scheduler stalls on a shared 2-core CI machine, which the run
    # without the flood sees too: allow two more than it had.
    slow = flooded["late_replies"] + flooded["timeouts"]
    assert slow <= 2 + alone["late_replies"] + alone["timeouts"], rows
    # Thousands of stale and busy replies, logged in aggregate: a line per kind every 5 s.
    output = (tmp_path / "flood" / "daemon.out").read_text().splitlines()
    noisy = [line for line in output if "error reply" in line or "flood:" in line]
    assert 1 <= len(noisy) <= 12, noisy
    assert any(" in all)" in line for line in noisy)
