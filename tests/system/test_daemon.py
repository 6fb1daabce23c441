"""The daemon as a car sees it: real subprocesses, real sockets on 127.0.0.1, real log files."""

from __future__ import annotations

import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.security import generate_keys
from controller.track import load_track
from controller.translog import events, load_steps
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, run_episode
from sim.plants import KinematicPlant
from sim.remote import ControllerClient
from sim.__main__ import free_port
from tests.system.daemons import ROOT
from vehicle_models.params import load_params
from vehicle_models.true_car import TrueCar

PARAMS = load_params("passenger_car")
STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}


def drive_lap(endpoint: str, track_name: str, on_step=None, plant=None):
    track = load_track(track_name)
    x0 = np.zeros(7)
    x0[:5] = start_state(track, 8.0).numpy()
    with ControllerClient(endpoint, timeout_s=1.0) as client:
        client.reset()
        summary = run_episode(
            client,
            plant or TrueCar.named("passenger_car"),
            track,
            x0,
            EpisodeConfig(vehicle_width=PARAMS.width, unavailable_limit_s=60.0),
            on_step=on_step,
        )
        return summary, client.stats()


@pytest.mark.slow
@pytest.mark.parametrize("planner", ["mppi", "ilqr"])
def test_lap_in_lockstep_and_a_readable_log(start_daemon, planner) -> None:
    extra = ["planner={kind: ilqr, horizon: 25, compile: false}"] if planner == "ilqr" else []
    daemon = start_daemon(extra)
    summary, stats = drive_lap(daemon.endpoint, "circle")
    assert summary.completed, summary
    assert summary.offtrack_s == 0.0 and summary.errors == 0 and summary.fallbacks == 0
    assert summary.mean_abs_lateral_m < 0.5
    assert stats["steps"] == summary.steps
    assert daemon.stop() == 0  # SIGTERM: clean exit, log flushed
    steps = load_steps(daemon.log_dir)
    assert len(steps) == summary.steps and set(steps.planner) == {planner}
    assert [e["kind"] for e in events(daemon.log_dir)][-1] == "stop"
    assert_records_match_the_schemas(daemon.log_dir)


def assert_records_match_the_schemas(log_dir) -> None:
    """Every record the daemon wrote has the schema's required keys and only its properties."""
    from controller.translog import read_log
    from controller.translog.schema import (
        EVENT_SCHEMA, EVENT_TOPIC, STEP_SCHEMA, STEP_TOPIC, TRACK_SCHEMA, TRACK_TOPIC,
    )

    schema_for = {STEP_TOPIC: STEP_SCHEMA, EVENT_TOPIC: EVENT_SCHEMA, TRACK_TOPIC: TRACK_SCHEMA}
    seen = set()
    for record in read_log(log_dir):
        if record.topic not in schema_for:  # e.g. the track description, once per log
            continue
        schema, data = schema_for[record.topic], record.data
        seen.add(record.topic)
        assert set(schema["required"]) <= set(data) <= set(schema["properties"]), (record.topic, sorted(data))
        for nested in ("state", "action"):
            if record.topic == STEP_TOPIC and data.get(nested) is not None:
                assert set(data[nested]) <= set(schema["properties"][nested]["properties"]), data[nested]
    assert seen == {STEP_TOPIC, EVENT_TOPIC, TRACK_TOPIC}


@pytest.mark.slow
def test_daemon_killed_and_restarted_mid_lap(start_daemon, tmp_path) -> None:
    first = start_daemon()
    second_log = tmp_path / "logs-after-restart"

    def crash_and_restart(n: int, state, progress: float) -> None:
        if n == 150:
            first.kill()
            # Same port; the simulator's next step times out and is resent until the new
            # daemon answers (ZeroMQ redials the client's one connection).
            start_daemon(port=first.port, log_dir=second_log, wait=False)

    summary, stats = drive_lap(first.endpoint, "circle", on_step=crash_and_restart, plant=KinematicPlant(PARAMS, 0.05))
    assert summary.completed and summary.timeouts >= 1, summary
    killed_run = load_steps(first.log_dir)
    assert 140 <= len(killed_run) <= 151  # at most the last flush interval (0.5 s) lost
    np.testing.assert_array_equal(killed_run.seq, np.arange(len(killed_run)))
    # The new daemon served the rest; a resent step may have reached it twice (the first copy
    # through the abandoned socket, whose reply nobody reads).
    assert summary.steps - 151 <= stats["steps"] <= summary.steps - 151 + summary.timeouts


def test_backlog_gets_stale_errors_and_only_the_newest_is_planned(start_daemon) -> None:
    daemon = start_daemon()
    with ControllerClient(daemon.endpoint) as client:
        client.reset()
        for seq in range(6):
            client.send({"type": "step", "seq": seq, "stamp": 0.01 * seq, "state": STATE})
        replies = [client.receive(None, 5.0) for _ in range(6)]
    assert all(r is not None for r in replies)
    by_seq = {r["seq"]: r for r in replies}
    assert by_seq[5]["type"] == "action" and by_seq[5]["status"] == "ok"
    stale = [r for r in replies if r["type"] == "error"]
    assert stale and all(r["code"] == "stale" for r in stale)


body_strategy = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda fields, state: msgpack.packb({"type": "step", "seq": 1, "stamp": 1.0, "state": {**STATE, **state}, **fields}),
        st.dictionaries(
            st.sampled_from(["type", "seq", "stamp", "state", "version"]),
            st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.floats() | st.text(max_size=8),
            max_size=3,
        ),
        st.dictionaries(
            st.sampled_from(["x", "y", "yaw", "v", "steer", "yaw_rate"]),
            st.none() | st.floats() | st.text(max_size=4) | st.booleans(),
            max_size=3,
        ),
    ),
)


def test_fuzzed_bodies_get_replies_and_the_daemon_keeps_serving(start_daemon) -> None:
    daemon = start_daemon()
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    unanswered = []

    @settings(max_examples=2000, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body_strategy)
    def send(body: bytes) -> None:
        sock.send_multipart([b"", body])
        if not sock.poll(5000):
            unanswered.append(body)
            return
        reply = msgpack.unpackb(sock.recv_multipart()[-1])
        assert reply["type"] in ("error", "action", "pong", "ack", "stats")

    try:
        send()
        sock.send_multipart([b"garbage-without-delimiter"])  # routable, nonsense
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv_multipart()[-1])["code"] == "malformed"
        sock.send_multipart([b"", b"\x00" * 100_000])  # over the size cap
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv_multipart()[-1])["code"] == "too_large"
        sock.send_multipart([b"", msgpack.packb({"type": "bye", "seq": 9})])  # its valid steps made it a car
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv_multipart()[-1])["type"] == "ack"
    finally:
        sock.close(linger=0)
    assert not unanswered
    with ControllerClient(daemon.endpoint) as client:
        assert client.reset()["type"] == "ack"
        assert client.ping()["type"] == "pong"
        reply = client.step(1, 1e6, STATE, timeout_s=5.0)
        assert reply.status == "ok" and np.isfinite(reply.action).all()
        stats = client.stats()
    assert stats["errors"] > 1000 and stats["errors_by_code"]["malformed"] > 100
    assert daemon.stop() == 0
    # Error events are rate-limited per code: a few records, whose counts add up to every reply.
    errors = [e for e in events(daemon.log_dir) if e["kind"] == "error"]
    final = stats["errors_by_code"]
    logged_codes = set(final) - {"stale", "busy"}
    assert {e["detail"]["code"] for e in errors} == logged_codes
    for code in logged_codes:
        of_code = [e["detail"] for e in errors if e["detail"]["code"] == code]
        assert sum(d["count"] for d in of_code) == of_code[-1]["total"] == final[code]
    assert len(errors) < 10 * len(logged_codes) < stats["errors"] / 20
    assert_records_match_the_schemas(daemon.log_dir)


def test_non_loopback_bind_without_keys_is_refused(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller", "--bind", f"tcp://0.0.0.0:{free_port()}", "--no-log"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "refusing to bind" in out.stderr and "Traceback" not in out.stderr


def test_curve_client_with_unknown_key_gets_no_service(start_daemon, tmp_path) -> None:
    server_public, server_secret = generate_keys(tmp_path / "keys", "daemon")
    allowed_public, allowed_secret = generate_keys(tmp_path / "keys" / "clients", "car")
    _, stranger_secret = generate_keys(tmp_path / "strangers", "intruder")
    daemon = start_daemon(
        [f"security.server_secret_key={server_secret}", f"security.client_keys_dir={tmp_path / 'keys' / 'clients'}"],
        wait=False,
    )
    try:
        with ControllerClient(daemon.endpoint, curve=(str(allowed_secret), str(server_public))) as car:
            assert car.wait_ready(120.0)["type"] == "pong"
        with ControllerClient(daemon.endpoint, timeout_s=2.0, curve=(str(stranger_secret), str(server_public))) as intruder:
            intruder.send({"type": "ping", "seq": 1})
            assert intruder.receive(1, 2.0) is None
        with ControllerClient(daemon.endpoint, timeout_s=2.0) as plain:
            plain.send({"type": "ping", "seq": 1})
            assert plain.receive(1, 2.0) is None
    finally:
        assert daemon.stop() == 0


def test_old_and_delayed_stamps_are_stale(start_daemon) -> None:
    daemon = start_daemon(["stale_after_s=0.5"])
    with ControllerClient(daemon.endpoint) as client:
        client.reset()
        assert client.step(1, 10.0, STATE, timeout_s=5.0).status == "ok"
        client.send({"type": "step", "seq": 2, "stamp": 9.0, "state": STATE})  # goes back in time
        assert client.receive(2, 5.0)["code"] == "stale"
        time.sleep(0.8)  # 0.8 s pass here, but the stamp says 0.05 s: it sat in a queue
        client.send({"type": "step", "seq": 3, "stamp": 10.05, "state": STATE})
        reply = client.receive(3, 5.0)
        assert reply["code"] == "stale" and "later than its stamp" in reply["message"]
        assert client.step(4, 10.10, STATE, timeout_s=5.0).status == "ok"
