"""``python -m sim demo`` as a new user runs it: a dead daemon is reported at once with its
reason, Ctrl-C leaves a partial summary and no traceback, and the demo's lap is the replay's."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.system.daemons import ROOT
from tools.replay.__main__ import main as replay

FAST = ["--set", "planner.num_samples=256", "--set", "planner.horizon=25"]


class Demo:
    """The demo in a subprocess, its console read line by line on a thread."""

    def __init__(self, out: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sim", "demo", "--out", str(out), *FAST, *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout_s: float = 120.0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def finish(self, timeout_s: float) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout_s)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code, "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def demo():
    started: list[Demo] = []

    def start(out: Path, *args: str) -> Demo:
        started.append(Demo(out, *args))
        return started[-1]

    yield start
    for d in started:
        d.stop()


@pytest.mark.slow
def test_a_daemon_that_dies_is_reported_at_once_with_a_partial_summary(tmp_path: Path, demo) -> None:
    run = demo(tmp_path / "run", "--laps", "5")
    pid = int(run.wait_for(r"started the daemon \(pid (\d+)\)").group(1))
    run.wait_for(r"^\s+10%")
    os.kill(pid, signal.SIGKILL)  # the daemon this test's demo started
    killed = time.monotonic()
    code, output = run.finish(timeout_s=30)
    assert time.monotonic() - killed < 10, output
    assert code == 1 and "error: the daemon exited after" in output and "(exit -9)" in output, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["end_reason"] == "exited" and summary["steps"] > 0, summary
    assert "Traceback" not in output


@pytest.mark.slow
def test_ctrl_c_ends_with_a_partial_summary_and_no_traceback(tmp_path: Path, demo) -> None:
    run = demo(tmp_path / "run", "--laps", "5")
    run.wait_for(r"^\s+10%")
    run.proc.send_signal(signal.SIGINT)
    code, output = run.finish(timeout_s=30)
    assert code == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "interrupted after" in output and "daemon stopped (exit 0)" in output, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["end_reason"] == "interrupted" and summary["steps"] > 0


@pytest.mark.slow
def test_the_daemons_reason_reaches_the_console(tmp_path: Path, demo) -> None:
    run = demo(tmp_path / "run", "--set", "cost.wieghts.lateral=3")
    code, output = run.finish(timeout_s=120)
    assert code == 2, output
    assert "the daemon exited before it was ready (exit 2)" in output, output
    assert "cost.wieghts.lateral: unknown key (did you mean cost.weights?)" in output, output


def test_a_malformed_track_fails_at_once_with_its_line(tmp_path: Path, capsys) -> None:
    from sim.__main__ import main

    bad = tmp_path / "bad.csv"
    bad.write_text("# x_m,y_m,w_tr_right_m,w_tr_left_m\n0,0,4,4\n1,abc,4,4\n")
    assert main(["demo", "--track", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "abc" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_demos_lap_is_the_replays_lap_and_start_up_is_shown(tmp_path: Path, demo) -> None:
    run = demo(tmp_path / "run", "--track", "circle", "--laps", "1")
    code, output = run.finish(timeout_s=240)
    assert code == 0, output
    assert "daemon: INFO controller: loading track circle" in output, output
    assert re.search(r"daemon: INFO controller.runtime: planner mppi ready after", output), output
    assert "lap time" in output
    assert "WARNING" not in output, output  # start-up pings no longer pile up into a "flood"
    demo_summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert replay(["report", str(tmp_path / "run" / "logs"), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "summary.json").read_text())["run"]
    assert report["track"] == "circle" and report["laps"] == 1, report
    assert report["lap_times_s"][0] == pytest.approx(demo_summary["lap_time_s"], abs=0.06)


def test_a_partial_lap_prints_no_lap_time() -> None:
    from sim.episode import Summary

    summary = Summary("circle", True, "lap", 130, 6.5, 0.1, 0.3, 0.0, 9.7, 1.0, 2.0, 1.0, 0, 0, 0, 0, 0,
                      "lockstep", laps=0.2)
    lines = "\n".join(summary.lines())
    assert "time for 0.2 laps   6.50 s" in lines and "lap time" not in lines
