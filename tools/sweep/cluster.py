"""A real multi-node Ray cluster on this machine, for tests and benchmarks.

``LocalCluster`` runs ``ray start --head --block`` and one ``ray start --address --block`` per
extra node as child processes; each ``--block`` process owns its node's Ray processes and
takes them down on SIGTERM, so leaving the context ends exactly what it started, by handle.

Ray (2.5x and later) authenticates its RPCs with a token. The cluster gets a fresh one, in
``RAY_AUTH_TOKEN`` of its processes and of this process (a driver here joins with it), so
nothing is read from or written to ``~/.ray``. ``ray start`` advertises the machine's
routable address even when given ``--node-ip-address 127.0.0.1`` (it replaces loopback, so
that other hosts could join); the token is what keeps others out.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED_LINE = "Ray runtime started"


def private_ray_env() -> None:
    """Token auth with a fresh token for a Ray this process starts, unless the caller set one;
    no usage statistics."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _reread_ray_settings()


def _reread_ray_settings() -> None:
    """Ray reads its settings (the auth mode among them) from the environment once, at import;
    a process that imported it earlier re-reads them, as Ray itself does when it turns
    token auth on."""
    if "ray" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()  # the token it read last time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``with LocalCluster(nodes=2, cpus_per_node=1) as cluster: ... cluster.address``."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, start_timeout_s: float = 180.0,
                 object_store_mb: int = 80):
        self.nodes, self.cpus_per_node = nodes, cpus_per_node
        self.start_timeout_s = start_timeout_s
        self.object_store_mb = object_store_mb
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._procs: list[subprocess.Popen[Any]] = []
        self._logs = Path(tempfile.mkdtemp(prefix="ray-cluster-"))
        self._saved_env: dict[str, str | None] = {}

    def _start(self, name: str, args: list[str]) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        common = ["--block", "--num-cpus", str(self.cpus_per_node), "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(self.object_store_mb * 2**20), "--disable-usage-stats"]
        log = self._logs / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([ray, "start", *args, *common], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self._procs.append(proc)
        deadline = time.monotonic() + self.start_timeout_s
        while STARTED_LINE not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)

    def __enter__(self) -> LocalCluster:
        token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
        for key, value in token.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _reread_ray_settings()
        try:
            self._start("head", ["--head", "--port", str(self.port), "--include-dashboard", "false"])
            for i in range(1, self.nodes):
                self._start(f"node{i}", ["--address", self.address])
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for proc in reversed(self._procs):  # workers first, the head last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reread_ray_settings()

    def __exit__(self, *exc: object) -> None:
        self.close()
