"""Real daemons in subprocesses on loopback ports, stopped within bounded time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sim.__main__ import free_port, stop_process
from sim.remote import ControllerClient

ROOT = Path(__file__).resolve().parents[2]
FAST = ["planner.compile=false", "planner.num_samples=256", "planner.horizon=25"]


class DaemonProcess:
    def __init__(self, tmp: Path, overrides: list[str], port: int | None = None, log_dir: Path | None = None):
        self.port = port or free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.log_dir = log_dir or tmp / "logs"
        self.output = open(tmp / f"daemon-{self.port}-{len(list(tmp.glob('daemon-*')))}.out", "w")
        args = [sys.executable, "-m", "controller", "--bind", self.endpoint, "--log-dir", str(self.log_dir)]
        for item in overrides:
            args.append(f"--set={item}")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.output, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        with ControllerClient(self.endpoint) as client:
            client.wait_ready(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        stop_process(self.proc)
        self.output.close()
        return self.proc.returncode



