"""Operating the daemon: the client CLI's answers and exit codes, Prometheus metrics scraped
over real HTTP, JSON-lines logs, the systemd ready notification. One real daemon for the module."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.client import main as client
from sim.__main__ import free_port
from controller.protocol_client import ControllerClient
from tests.system.daemons import FAST, ROOT, stop_process
from vehicle_models import ModelBundle, load_params, save_bundle

STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}


class OpsDaemon:
    def __init__(self, tmp: Path) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.metrics_port = free_port()
        self.notify_path = tmp / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(120)
        self.stdout, self.stderr = tmp / "daemon.out", tmp / "daemon.err"
        self.model_dir = tmp / "models"
        self.model_dir.mkdir()
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "--bind", self.endpoint, "--log-dir", str(tmp / "logs"),
             "--metrics", str(self.metrics_port), "--log-json", f"--set=model.model_dir={self.model_dir}",
             *(f"--set={s}" for s in FAST)],
            cwd=ROOT, env=env, stdout=open(self.stdout, "w"), stderr=open(self.stderr, "w"),
        )

    def scrape(self) -> dict[str, float]:
        """Every sample, keyed by name{labels}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return samples

    def stop(self) -> None:
        stop_process(self.proc)
        self.notify.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = OpsDaemon(tmp_path_factory.mktemp("ops"))
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.slow
def test_ready_is_notified_to_systemd(daemon: OpsDaemon) -> None:
    message, _ = daemon.notify.recvfrom(256)  # sent once the daemon serves
    assert message == b"READY=1"
    assert "ready: tcp://127.0.0.1:" in daemon.stdout.read_text()


@pytest.mark.slow
def test_client_ping_and_stats_and_exit_codes(daemon: OpsDaemon, capsys) -> None:
    with ControllerClient(daemon.endpoint) as c:
        c.wait_ready(120)
    assert client(["ping", "--endpoint", daemon.endpoint]) == 0
    assert "pong from" in capsys.readouterr().out
    assert client(["stats", "--endpoint", daemon.endpoint, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["model"] == "kinematic" and "steps" in stats
    unused = f"tcp://127.0.0.1:{free_port()}"
    assert client(["ping", "--endpoint", unused, "--timeout", "0.3"]) == 3
    assert "no answer" in capsys.readouterr().err
    assert client(["ping", "extra", "--endpoint", daemon.endpoint]) == 2
    # the console command, as a script calls it
    out = subprocess.run([sys.executable, "-m", "controller.client", "ping", "--endpoint", daemon.endpoint, "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["type"] == "pong", out.stderr


@pytest.mark.slow
def test_client_reload_waits_for_the_new_model_and_reports_a_failure(daemon: OpsDaemon, capsys) -> None:
    with ControllerClient(daemon.endpoint) as c:
        c.wait_ready(120)
    bundle = save_bundle(ModelBundle(version="ops-1", params=load_params("passenger_car")), daemon.model_dir / "ops-1")
    assert client(["reload", str(bundle), "--endpoint", daemon.endpoint, "--wait", "120"]) == 0
    assert "-> ops-1" in capsys.readouterr().out
    (daemon.model_dir / "broken").mkdir()  # under model_dir, but no bundle in it
    assert client(["reload", str(daemon.model_dir / "broken"), "--endpoint", daemon.endpoint, "--wait", "60"]) == 1
    assert "reload failed" in capsys.readouterr().err
    samples = daemon.scrape()
    assert samples["vehicle_mpc_reloads_total"] >= 1 and samples["vehicle_mpc_reload_failures_total"] >= 1
    assert samples['vehicle_mpc_model_info{version="ops-1"}'] == 1


@pytest.mark.slow
def test_metrics_count_steps_latencies_and_errors(daemon: OpsDaemon) -> None:
    with ControllerClient(daemon.endpoint) as c:
        c.wait_ready(120)
        before = daemon.scrape()
        c.reset()
        for k in range(20):
            assert c.step(k, k * 0.05, STATE)["type"] == "action"
        c.send_raw(msgpack.packb({"type": "step", "seq": 99, "stamp": "soon", "state": STATE}))
        assert c.receive(99, 5.0)["type"] == "error"
    # The daemon counts a request after sending its reply: give the last ones a moment.
    deadline = time.monotonic() + 10
    while True:
        after = daemon.scrape()
        grew = lambda name: after.get(name, 0) - before.get(name, 0)  # noqa: E731
        errors = sum(v for k, v in after.items() if k.startswith("vehicle_mpc_errors_total{"))
        if (grew("vehicle_mpc_steps_total") >= 20 and errors >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert grew("vehicle_mpc_steps_total") == 20
    assert grew("vehicle_mpc_solve_seconds_count") == 20 and grew("vehicle_mpc_handle_seconds_count") == 20
    assert after['vehicle_mpc_solve_seconds_bucket{le="+Inf"}'] == after["vehicle_mpc_solve_seconds_count"]
    assert 0 < grew("vehicle_mpc_solve_seconds_sum") < 20 * 1.0  # seconds, loosely: a loaded CI machine
    assert sum(v for k, v in after.items() if k.startswith("vehicle_mpc_errors_total{")) >= 1
    assert grew('vehicle_mpc_steps_by_status_total{status="ok"}') + grew("vehicle_mpc_fallbacks_total") == 20
    assert "vehicle_mpc_deadline_misses_total" in after and "process_cpu_seconds_total" in after


def documented_stats_types() -> dict[str, type]:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    table = doc.split("<!-- stats-types:begin -->")[1].split("<!-- stats-types:end -->")[0]
    kinds = {"float64": float, "integer": int, "str": str, "map": dict, "array": list}
    types = {}
    for row in table.splitlines()[2:]:
        keys, kind = [c.strip() for c in row.strip("|").split("|")]
        for key in re.findall(r"`(\w+)`", keys):
            types[key] = kinds[kind.split()[0].rstrip(":,")]
    return types


@pytest.mark.slow
def test_stats_reply_has_the_documented_keys_and_types(daemon: OpsDaemon) -> None:
    with ControllerClient(daemon.endpoint) as c:
        c.wait_ready(120)
        c.reset()
        c.step(0, 0.0, STATE)
        reply = c.stats()
    documented = documented_stats_types()
    for key, value in reply.items():
        if key in ("type", "version", "seq"):
            continue
        assert key in documented, f"stats key {key!r} is not in docs/protocol.md"
        assert isinstance(value, documented[key]) and not isinstance(value, bool), (key, value)


@pytest.mark.slow
def test_logs_are_json_lines(daemon: OpsDaemon) -> None:
    with ControllerClient(daemon.endpoint) as c:
        c.wait_ready(120)
    lines = [line for line in daemon.stderr.read_text().splitlines() if line.strip()]
    assert lines, "no log lines"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["message"].startswith("metrics at http://127.0.0.1:") for r in records)
