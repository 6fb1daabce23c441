"""Transition log: round trip, rotation, truncation at every offset, SIGKILL, transitions, export."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from controller.translog import (
    LogError,
    ReadReport,
    TransitionLog,
    export,
    load_steps,
    read_records,
    transitions,
)
from controller.translog.writer import STEP_TOPIC


def record(episode: int, seq: int, stamp: float) -> dict:
    return {
        "episode": episode,
        "seq": seq,
        "stamp": stamp,
        "received": 1000.0 + stamp,
        "replied": 1000.001 + stamp,
        "state": {"x": float(seq), "y": 2.0 * seq, "steer": 0.01, "v": 10.0, "yaw": 0.1, "yaw_rate": None, "slip": None},
        "action": {"steer_rate": 0.1 * seq, "accel": -1.0},
        "status": "ok",
        "solve_ms": 3.0,
        "deadline_missed": False,
        "cost": 1.5,
        "cost_terms": {"lateral": 0.5, "speed": 1.0},
        "planner": "mppi",
        "model": "kinematic",
    }


def write(directory: Path, count: int, **kwargs) -> TransitionLog:
    log = TransitionLog(directory, flush_s=0.05, **kwargs)
    log.event("start", episode=0)
    for i in range(count):
        log.step(record(i // 50, i % 50, 0.05 * (i % 50)))
    log.close()
    return log


def test_round_trip_and_transitions(tmp_path: Path) -> None:
    write(tmp_path, 120)
    steps = load_steps(tmp_path)
    assert len(steps) == 120
    assert steps.report.truncated_files == []
    np.testing.assert_array_equal(steps.states[:3, 0], [0.0, 1.0, 2.0])
    assert np.isnan(steps.states[:, 5]).all()
    assert set(steps.cost_terms) == {"lateral", "speed"}
    t = transitions(steps)
    # 3 episodes of 50, 50, 20 records: 49 + 49 + 19 pairs, none across an episode boundary.
    assert len(t) == 117
    np.testing.assert_allclose(t.next_states[:, 0] - t.states[:, 0], 1.0)
    np.testing.assert_allclose(t.dt, 0.05)
    np.testing.assert_allclose(t.actions[:, 0], 0.1 * t.states[:, 0])


def test_gaps_in_seq_break_transitions(tmp_path: Path) -> None:
    with TransitionLog(tmp_path, flush_s=0.05) as log:
        for seq in (0, 1, 2, 5, 6):
            log.step(record(0, seq, 0.05 * seq))
    assert len(transitions(load_steps(tmp_path))) == 3


def test_rotation_by_size_and_by_time(tmp_path: Path) -> None:
    by_size = write(tmp_path / "size", 400, rotate_bytes=20_000)
    assert len(by_size.files) > 3
    assert len(load_steps(tmp_path / "size")) == 400
    log = TransitionLog(tmp_path / "time", flush_s=0.02, rotate_s=0.1)
    for i in range(5):
        log.step(record(0, i, 0.05 * i))
        time.sleep(0.12)
    log.close()
    assert len(log.files) >= 3
    assert len(load_steps(tmp_path / "time")) == 5


def test_truncation_at_every_offset_recovers_every_complete_record(tmp_path: Path) -> None:
    log = write(tmp_path / "full", 30)
    data = log.files[0].read_bytes()
    complete_until = []  # byte offset at which each record is complete
    # Find record boundaries by reading prefixes; count is monotone in the prefix length.
    previous = -1
    cut = tmp_path / "cut.mcap"
    for offset in range(8, len(data) + 1, 7):
        cut.write_bytes(data[:offset])
        report = ReadReport()
        count = sum(1 for topic, _, _ in read_records(cut, report) if topic == STEP_TOPIC)
        assert count >= previous  # never fewer records from a longer prefix
        previous = count
        complete_until.append(count)
    assert previous == 30


def test_killed_writer_loses_at_most_the_last_second(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from controller.translog import TransitionLog
        log = TransitionLog({str(tmp_path)!r}, flush_s=0.2)
        i = 0
        while True:
            log.step({{"episode": 0, "seq": i, "stamp": i * 0.01, "received": time.time(),
                      "replied": time.time(), "state": {{}}, "action": {{}}, "status": "ok"}})
            if i == 0:
                print("started", flush=True)
            i += 1
            time.sleep(0.002)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(1.5)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    steps = load_steps(tmp_path)
    assert len(steps) > 100
    assert killed_at - steps.received.max() < 1.0
    np.testing.assert_array_equal(steps.seq, np.arange(len(steps)))  # a prefix, nothing lost inside


def test_export_parquet_and_csv(tmp_path: Path) -> None:
    write(tmp_path / "logs", 60)
    assert export(tmp_path / "logs", tmp_path / "steps.csv", "csv") == 60
    rows = list(csv.DictReader(open(tmp_path / "steps.csv")))
    assert len(rows) == 60 and rows[1]["state_x"] == "1.0" and "cost_lateral" in rows[0]
    pq = pytest.importorskip("pyarrow.parquet")
    assert export(tmp_path / "logs", tmp_path / "steps.parquet", "parquet") == 60
    table = pq.read_table(tmp_path / "steps.parquet")
    assert table.num_rows == 60 and "action_accel" in table.column_names


def test_clear_errors_for_missing_empty_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no such file"):
        load_steps(tmp_path / "absent.mcap")
    with pytest.raises(LogError, match="no .mcap log files"):
        load_steps(tmp_path)
    (tmp_path / "empty.mcap").write_bytes(b"")
    with pytest.raises(LogError, match="empty file"):
        load_steps(tmp_path / "empty.mcap")
    (tmp_path / "text.mcap").write_text("hello, this is not mcap at all\n" * 10)
    with pytest.raises(LogError, match="not an MCAP file"):
        load_steps(tmp_path / "text.mcap")


def test_cli_exit_code_without_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller.translog", "info", str(tmp_path / "nothing")],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr
