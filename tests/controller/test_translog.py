"""Transition log: round trip, rotation, truncation at every offset, SIGKILL, transitions, export.

Oracles, not timers: truncation is checked against where each message's bytes end in the
file; the killed writer against the wall-clock time of the last record that survived.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from controller.translog import (
    ACTION_FIELDS,
    EVENT_TOPIC,
    STATE_FIELDS,
    STEP_TOPIC,
    LogError,
    ReadReport,
    TransitionLog,
    events,
    export,
    load_steps,
    log_files,
    read_log,
    transitions,
)
from controller.translog.__main__ import main as cli
from controller.translog.schema import EVENT_SCHEMA, STEP_SCHEMA
from controller.translog.writer import to_json

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^controller-\d{8}T\d{6}\.\d{3}Z-\d{4}\.mcap$")


def make_record(
    episode: int = 0, seq: int = 0, stamp: float = 0.0, **overrides: Any
) -> dict[str, Any]:
    """A step record as the daemon builds it; x = seq, steer_rate = 0.1 seq: pairs are checkable."""
    record = {
        "session": "test.1",
        "episode": episode,
        "seq": seq,
        "stamp": stamp,
        "received": 1000.0 + stamp,
        "replied": 1000.001 + stamp,
        "state": {
            "x": float(seq),
            "y": 2.0 * seq,
            "steer": 0.01,
            "v": 10.0,
            "yaw": 0.1,
            "yaw_rate": None,
            "slip": None,
        },
        "action": {"steer_rate": 0.1 * seq, "accel": -1.0},
        "status": "ok",
        "solve_ms": 3.0,
        "deadline_missed": False,
        "cost": 1.5,
        "cost_terms": {"lateral": 0.5, "speed": 1.0},
        "planner": "mppi",
        "model": "kinematic-v1",
    }
    record.update(overrides)
    return record


def write_log(directory: Path, records: list[dict[str, Any]], **options: Any) -> TransitionLog:
    log = TransitionLog(directory, flush_s=options.pop("flush_s", 0.05), **options)
    log.event("start", episode=0, model="kinematic-v1", endpoint="tcp://127.0.0.1:1")
    for r in records:
        log.step(r)
    assert log.close()
    return log


def episodes(counts: list[int], dt: float = 0.05) -> list[dict[str, Any]]:
    return [make_record(e, k, dt * k) for e, n in enumerate(counts) for k in range(n)]


# -- round trip ------------------------------------------------------------------------------
def test_round_trip_keeps_every_record_and_event(tmp_path: Path) -> None:
    records = episodes([30, 20])
    log = TransitionLog(tmp_path, flush_s=0.05)
    log.event("start", episode=0, model="kinematic-v1", endpoint="tcp://x")
    for r in records[:30]:
        log.step(r)
    log.event("reset", episode=1)
    log.event("reload", episode=1, model="residual-v2", previous="kinematic-v1")
    log.event("error", episode=1, code="bad_state", message="v is NaN", seq=7)
    for r in records[30:]:
        log.step(r)
    assert log.close()
    assert log.records_written == 54 and log.write_errors == 0
    assert len(log.files) == 1 and NAME.match(log.files[0].name)

    report = ReadReport()
    got = list(read_log(tmp_path, report))
    assert [r.data for r in got if r.topic == STEP_TOPIC] == records  # exact, None included
    assert report == ReadReport(files=1, records=54)  # nothing truncated, unfinished or bad
    assert [t for t, _, _ in got][:31] == [EVENT_TOPIC] + [STEP_TOPIC] * 30
    log_times = [r.log_time_ns for r in got]
    assert log_times == sorted(log_times)

    kinds = events(tmp_path)
    assert [e["kind"] for e in kinds] == ["start", "reset", "reload", "error"]
    assert kinds[2]["episode"] == 1
    assert kinds[2]["detail"] == {"model": "residual-v2", "previous": "kinematic-v1"}
    assert kinds[3]["detail"] == {"code": "bad_state", "message": "v is NaN", "seq": 7}


def test_steps_as_columns(tmp_path: Path) -> None:
    records = episodes([5])
    records[2]["state"].update(yaw_rate=0.2, slip=-0.01)
    records[3]["cost_terms"] = {"lateral": 0.5}  # a term missing from one step
    records[4].update(status="fallback", deadline_missed=True, cost=None)
    write_log(tmp_path, records)
    steps = load_steps(tmp_path)
    assert len(steps) == 5 and steps.states.shape == (5, 7) and steps.actions.shape == (5, 2)
    np.testing.assert_array_equal(steps.states[:, STATE_FIELDS.index("x")], np.arange(5.0))
    assert np.isnan(steps.states[[0, 1, 3, 4], 5:]).all()
    np.testing.assert_array_equal(steps.states[2, 5:], [0.2, -0.01])
    assert list(steps.status) == ["ok"] * 4 + ["fallback"]
    assert list(steps.deadline_missed) == [False] * 4 + [True]
    assert set(steps.cost_terms) == {"lateral", "speed"} and np.isnan(steps.cost_terms["speed"][3])
    assert np.isnan(steps.cost[4]) and steps.cost[0] == 1.5
    assert set(steps.model) == {"kinematic-v1"} and set(steps.planner) == {"mppi"}
    picked = steps.select(steps.seq >= 3)
    assert (
        len(picked) == 2
        and picked.states.shape == (2, 7)
        and len(picked.cost_terms["lateral"]) == 2
    )


def test_numpy_values_and_non_finite_numbers_are_written_as_json(tmp_path: Path) -> None:
    record = make_record(
        solve_ms=np.float32(2.5),
        seq=np.int64(3),
        cost=float("nan"),
        cost_terms={"lateral": np.float32(1.0), "speed": float("inf")},
    )
    assert json.loads(to_json(record))["cost_terms"] == {"lateral": 1.0, "speed": None}
    write_log(tmp_path, [record])
    (got,) = [r.data for r in read_log(tmp_path) if r.topic == STEP_TOPIC]
    assert got["seq"] == 3 and got["solve_ms"] == 2.5 and got["cost"] is None


def test_an_unencodable_record_is_dropped_alone(tmp_path: Path) -> None:
    cyclic = make_record(seq=1)
    cyclic["cost_terms"]["self"] = cyclic["cost_terms"]
    log = write_log(tmp_path, [make_record(seq=0), cyclic, make_record(seq=2)])
    assert log.bad_records == 1 and log.write_errors == 0 and len(log.files) == 1
    assert list(load_steps(tmp_path).seq) == [0, 2]


def test_schemas_describe_the_records_the_daemon_writes() -> None:
    from vehicle_models.layout import Action, State  # loads torch; the log package must not

    assert STATE_FIELDS == tuple(s.name.lower() for s in State)
    assert ACTION_FIELDS == tuple(a.name.lower() for a in Action)
    # The record the daemon writes, from the daemon's own mapping (controller.control_step).
    from controller.control_step import step_record
    from controller.core import StepOutcome
    from controller.protocol import Step

    state = (1.0, 2.0, 0.01, 10.0, 0.1, float("nan"), float("nan"))
    outcome = StepOutcome((0.1, -1.0), "ok", 3.0, False, None, 1.5, {"lateral": 0.5})
    record = step_record("run.1", 0, Step(7, 0.35, state, False, {}), outcome, 1000.0, 1000.001, "mppi", "kinematic")
    assert set(STEP_SCHEMA["required"]) <= set(record) <= set(STEP_SCHEMA["properties"])
    assert set(record["state"]) == set(STEP_SCHEMA["properties"]["state"]["properties"])
    assert set(record["action"]) == set(STEP_SCHEMA["properties"]["action"]["properties"])
    assert record["state"]["yaw_rate"] is None and record["state"]["x"] == 1.0
    assert set(EVENT_SCHEMA["required"]) == {"kind", "time", "detail"}


def test_records_after_close_are_dropped_not_queued(tmp_path: Path) -> None:
    log = write_log(tmp_path, episodes([3]))
    log.step(make_record(seq=99))
    assert log.dropped_after_close == 1 and len(load_steps(tmp_path)) == 3


# -- rotation ----------------------------------------------------------------------------------
def test_rotation_by_size_keeps_order_across_files(tmp_path: Path) -> None:
    records = episodes([200, 200])
    log = write_log(tmp_path, records, rotate_bytes=16_000)
    overhead = write_log(tmp_path / "empty", []).files[0].stat().st_size  # header and summary
    assert len(log.files) >= 5
    assert log.files == log_files(tmp_path)  # name order is write order
    assert all(NAME.match(p.name) for p in log.files)
    assert [int(p.stem.rsplit("-", 1)[1]) for p in log.files] == list(range(len(log.files)))
    # Every file is complete on its own (summary and footer), at most one record past the limit.
    for path in log.files:
        report = ReadReport()
        list(read_log(path, report))
        assert report.truncated_files == report.unfinished_files == []
        assert path.stat().st_size < 16_000 + overhead + len(to_json(records[-1])) + 100
    assert [r.data for r in read_log(tmp_path) if r.topic == STEP_TOPIC] == records
    assert len(transitions(load_steps(tmp_path))) == 2 * 199  # no pair lost at a file boundary


def test_a_directory_of_run_directories_gives_every_file_below_it(tmp_path: Path) -> None:
    """A ladder's logs/ holds one directory per daemon run; naming it reads them all, in write
    order (the files' names carry their start time), and a directory with files of its own
    gives only those."""
    first = write_log(tmp_path / "logs" / "daemon-10", episodes([4])).files
    time.sleep(0.01)
    second = write_log(tmp_path / "logs" / "daemon-9", episodes([5])).files
    assert log_files(tmp_path / "logs") == first + second
    assert len(load_steps(tmp_path / "logs")) == 9
    assert log_files(tmp_path / "logs" / "daemon-9") == second
    with pytest.raises(LogError, match="no .mcap log files"):
        log_files((tmp_path / "nothing").mkdir() or tmp_path / "nothing")


def test_rotation_by_time(tmp_path: Path) -> None:
    log = TransitionLog(tmp_path, flush_s=0.02, rotate_s=0.1)
    for k in range(4):
        log.step(make_record(0, k, 0.05 * k))
        time.sleep(0.12)
    assert log.close()
    assert len(log.files) == 4  # one per record: each found its file older than rotate_s
    assert list(load_steps(tmp_path).seq) == [0, 1, 2, 3]


def test_an_idle_log_leaves_no_empty_files(tmp_path: Path) -> None:
    log = TransitionLog(tmp_path, flush_s=0.02, rotate_s=0.05)
    time.sleep(0.2)
    assert log.close() and len(log.files) == 1


def test_same_moment_restarts_do_not_overwrite(tmp_path: Path) -> None:
    first = write_log(tmp_path, episodes([3]))
    second = write_log(tmp_path, episodes([4]))
    assert len({*first.files, *second.files}) == 2
    assert len(load_steps(tmp_path)) == 7


# -- truncation ------------------------------------------------------------------------------
def message_ends(data: bytes, records: list[dict[str, Any]]) -> list[int]:
    """Byte offset at which each record's message is complete (its JSON body ends the record)."""
    ends, start = [], 0
    for r in records:
        body = to_json(r)
        at = data.index(body, start)
        ends.append(at + len(body))
        start = ends[-1]
    return ends


def test_truncation_at_every_offset_recovers_every_complete_record(tmp_path: Path) -> None:
    records = episodes([12])
    log = write_log(tmp_path / "full", records)
    data = log.files[0].read_bytes()
    ends = message_ends(data, records)
    cut = tmp_path / "cut.mcap"
    # Every offset through the header, schemas, channels, the start event and three messages;
    # a stride over the rest (more messages alike, then the summary), to keep the test short.
    offsets = [*range(1, ends[2] + 2), *range(ends[2] + 2, len(data), 7), len(data)]
    for offset in offsets:
        cut.write_bytes(data[:offset])
        report = ReadReport()
        got = [r.data for r in read_log(cut, report) if r.topic == STEP_TOPIC]  # never raises
        complete = sum(end <= offset for end in ends)
        assert got == records[:complete], offset
        assert report.corrupt_files == [] and report.bad_messages == 0, offset
        if offset < len(data):
            assert report.truncated_files or report.unfinished_files, offset
        if 0 < complete < len(ends):  # cut between or inside messages: exactly the tail is lost
            assert report.unreadable_bytes == offset - ends[complete - 1], offset
    assert report == ReadReport(files=1, records=13)  # the whole file: clean


def test_cut_files_among_others_do_not_hide_the_rest(tmp_path: Path) -> None:
    log = write_log(tmp_path, episodes([10, 10]), rotate_bytes=4_000)
    assert len(log.files) >= 3
    per_file = [[r.data for r in read_log(p) if r.topic == STEP_TOPIC] for p in log.files]
    middle = log.files[1]
    data = middle.read_bytes()
    middle.write_bytes(data[: message_ends(data, per_file[1])[-1] - 10])  # a crash mid-message...
    empty = tmp_path / "controller-00000000T000000.000Z-0000.mcap"  # ...or before the header
    empty.write_bytes(b"")
    report = ReadReport()
    got = [r.data for r in read_log(tmp_path, report) if r.topic == STEP_TOPIC]
    assert got == per_file[0] + per_file[1][:-1] + [r for rs in per_file[2:] for r in rs]
    assert str(middle) in report.truncated_files and len(report.truncated_files) == 2
    assert report.unreadable_bytes > 0 and report.files == len(log.files) + 1


@pytest.mark.timeout(30)  # the child is killed in any case; this bounds a hung readline
def test_killed_writer_loses_at_most_the_last_second(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from controller.translog import TransitionLog
        log = TransitionLog({str(tmp_path)!r})  # the daemon's default flush interval
        k = 0
        while True:
            # Small records: the file's 8 KiB buffer alone would hold over 2 s of them.
            log.step({{"episode": 0, "seq": k, "stamp": 0.05 * k, "received": time.time()}})
            if k == 0:
                print("started", flush=True)
            k += 1
            time.sleep(0.05)  # 20 Hz, a slow control loop
        """
    )
    with running(script) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(1.5)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    report = ReadReport()
    received = [r.data["received"] for r in read_log(tmp_path, report) if r.topic == STEP_TOPIC]
    assert len(received) > 15
    assert killed_at - received[-1] < 1.0  # what was lost spans less than a second
    assert report.corrupt_files == [] and report.unfinished_files + report.truncated_files
    steps = load_steps(tmp_path)
    np.testing.assert_array_equal(steps.seq, np.arange(len(steps)))  # a prefix: no hole inside


@contextlib.contextmanager
def running(script: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


# -- transitions -----------------------------------------------------------------------------
def test_transitions_pair_consecutive_steps_within_episodes(tmp_path: Path) -> None:
    write_log(tmp_path, episodes([50, 50, 20]))
    t = transitions(load_steps(tmp_path))
    assert len(t) == 49 + 49 + 19  # no pair across an episode boundary
    assert t.states.shape == t.next_states.shape == (117, 7) and t.actions.shape == (117, 2)
    np.testing.assert_array_equal(np.bincount(t.episode), [49, 49, 19])
    np.testing.assert_allclose(t.next_states[:, 0] - t.states[:, 0], 1.0)
    np.testing.assert_allclose(t.dt, 0.05)
    np.testing.assert_allclose(t.actions[:, 0], 0.1 * t.states[:, 0])  # step k's own action
    assert np.isnan(t.states[:, 5:]).all() and np.isnan(t.next_states[:, 5:]).all()


def test_gaps_and_stalls_break_the_chain(tmp_path: Path) -> None:
    stamps = {0: 0.0, 1: 0.05, 2: 0.1, 5: 0.25, 6: 0.3, 7: 2.0}  # seq 3, 4 lost; a stall before 7
    write_log(tmp_path, [make_record(0, k, s) for k, s in stamps.items()])
    t = transitions(load_steps(tmp_path))
    assert list(t.states[:, 0]) == [0.0, 1.0, 5.0]


# -- export and CLI --------------------------------------------------------------------------
def test_export_csv_and_parquet(tmp_path: Path) -> None:
    records = episodes([40, 20])
    records[3]["state"]["yaw_rate"] = 0.25
    write_log(tmp_path / "logs", records)
    assert export(tmp_path / "logs", tmp_path / "steps.csv", format="csv") == 60
    with open(tmp_path / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60
    assert {
        "state_x",
        "state_slip",
        "action_accel",
        "action_steer_rate",
        "cost",
        "cost_lateral",
        "cost_speed",
        "episode",
        "seq",
        "status",
        "model",
    } <= set(rows[0])
    assert (
        rows[1]["state_x"] == "1.0"
        and rows[3]["state_yaw_rate"] == "0.25"
        and rows[0]["state_yaw_rate"] == ""
    )

    pq = pytest.importorskip("pyarrow.parquet")
    assert export(tmp_path / "logs", tmp_path / "steps.parquet") == 60
    table = pq.read_table(tmp_path / "steps.parquet").to_pydict()
    assert table["action_accel"] == [-1.0] * 60 and table["episode"] == [0] * 40 + [1] * 20
    assert (
        table["state_yaw_rate"][3] == 0.25 and table["state_yaw_rate"][0] is None
    )  # null, not NaN
    assert table["status"][0] == "ok" and table["cost_lateral"][0] == 0.5


def test_clear_errors_for_missing_empty_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no such file"):
        load_steps(tmp_path / "absent.mcap")
    with pytest.raises(LogError, match="no .mcap log files"):
        load_steps(tmp_path)
    (tmp_path / "empty.mcap").write_bytes(b"")
    with pytest.raises(LogError, match="empty file"):
        load_steps(tmp_path / "empty.mcap")
    (tmp_path / "text.mcap").write_text("hello, this is not mcap at all\n")
    with pytest.raises(LogError, match="not an MCAP file"):
        load_steps(tmp_path / "text.mcap")
    write_log(tmp_path / "ok", episodes([2]))
    with pytest.raises(LogError, match="unknown format"):
        export(tmp_path / "ok", tmp_path / "x.json", format="json")  # type: ignore[arg-type]
    with pytest.raises(LogError, match="no such directory"):
        export(tmp_path / "ok", tmp_path / "nowhere" / "x.csv", format="csv")


def test_cli_export_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path / "logs", episodes([10]))
    assert (
        cli(["export", str(tmp_path / "logs"), "--format", "csv", "--out", str(tmp_path / "s.csv")])
        == 0
    )
    assert "wrote 10 rows" in capsys.readouterr().out
    assert cli(["info", str(tmp_path / "logs")]) == 0
    assert "10 steps, 1 sessions, 1 episodes, 9 transitions" in capsys.readouterr().out
    (tmp_path / "bad.mcap").write_bytes(b"PK\x03\x04 a zip")
    for argv in (
        ["info", str(tmp_path / "nothing")],
        ["info", str(tmp_path / "bad.mcap")],
        ["export", str(tmp_path / "logs"), "--out", str(tmp_path / "no" / "x.parquet")],
    ):
        assert cli(argv) == 2
        assert capsys.readouterr().err.startswith("error: ")


def test_cli_as_a_process_exits_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty.mcap").write_bytes(b"")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.translog",
            "export",
            str(tmp_path / "empty.mcap"),
            "--format",
            "parquet",
            "--out",
            str(tmp_path / "x.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "empty file" in out.stderr and "Traceback" not in out.stderr


def test_a_directory_gone_bad_backs_off_counts_drops_and_reports_health(tmp_path: Path) -> None:
    """The log directory replaced by a plain file (a real fault, for root too): each failure
    is counted, new files are tried only after a back-off, and health() says so."""
    directory = tmp_path / "logs"
    log = TransitionLog(directory, rotate_s=0.05, flush_s=0.05)
    log.step(make_record(seq=0))
    deadline = time.monotonic() + 5
    while log.records_written < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    directory.rename(tmp_path / "moved")
    directory.write_text("not a directory")
    time.sleep(0.06)  # past rotate_s: the next record needs a new file
    for seq in range(1, 201):
        log.step(make_record(seq=seq))
    while log.records_dropped < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    health = log.health()
    log.close()
    assert health["records_dropped"] == 200 and health["records_written"] == 1, health
    assert health["write_errors"] == 1  # one attempt, then the back-off: not one per record
    assert health["last_error"].startswith("open: NotADirectoryError") and health["files"] == 1


def test_cli_says_when_a_file_has_no_footer(tmp_path: Path, capsys) -> None:
    """A file copied while the writer still had it open reads like one of a killed daemon."""
    log = TransitionLog(tmp_path / "live", flush_s=0.05)
    for seq in range(5):
        log.step(make_record(seq=seq))
    deadline = time.monotonic() + 5
    while log.records_written < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # flushed
    (tmp_path / "killed").mkdir()
    copy = tmp_path / "killed" / log.files[0].name
    copy.write_bytes(log.files[0].read_bytes())
    log.close()
    assert cli(["info", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "5 steps" in out and "no footer" in out and copy.name in out


def test_two_cars_interleaved_make_no_cross_session_transitions_nor_sysid_blocks(tmp_path: Path) -> None:
    """Two cars with the same seq, stamps and episode, interleaved in one log (as one daemon
    serving both writes them): every pair and every sysid block stays within one car."""
    from tools.sysid.data import blocks

    def car(session: str, y: float) -> list[dict[str, Any]]:
        out = []
        for k in range(400):
            r = make_record(0, k, 0.05 * k, session=session)
            r["state"] = {**r["state"], "x": 0.5 * k, "y": y}
            out.append(r)
        return out

    a, b = car("run.1", 0.0), car("run.2", 3.0)
    write_log(tmp_path, [r for pair in zip(a, b) for r in pair])
    steps = load_steps(tmp_path)
    assert steps.sessions() == ["run.1", "run.2"]
    np.testing.assert_array_equal(steps.of_session("run.2").states[:, 1], 3.0)
    pairs = transitions(steps)
    assert len(pairs) == 2 * 399 and set(pairs.session) == {"run.1", "run.2"}
    np.testing.assert_array_equal(pairs.next_states[:, 1], pairs.states[:, 1])  # never a jump between cars
    chosen, period = blocks(steps, block_s=4.0)
    assert period == pytest.approx(0.05)
    for block in chosen:
        assert len(set(block.states[:, 1].tolist())) == 1
    with pytest.raises(LogError, match="no steps of session"):
        steps.of_session("run.3")


def test_replay_selects_a_session_and_refuses_to_mix_two(tmp_path: Path, capsys) -> None:
    from tools.replay.__main__ import main as replay

    write_log(tmp_path / "logs", [make_record(0, k, 0.05 * k, session=s) for k in range(30) for s in ("run.1", "run.2")])
    assert replay(["export", str(tmp_path / "logs"), "--format", "csv", "--out", str(tmp_path / "b.csv"), "--session", "run.2"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert len(rows) == 30 and {r["session"] for r in rows} == {"run.2"}
    assert replay(["report", str(tmp_path / "logs"), "--track", "circle", "--out", str(tmp_path / "r")]) == 2
    assert "pick one with --session" in capsys.readouterr().err
