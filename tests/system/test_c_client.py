"""The wire contract does not lean on Python: the C client under examples/ (libzmq + msgpack-c)
is built with the system compiler and drives a real daemon. Skipped, with the reason, where the
compiler or the two libraries' development files are missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controller.protocol_client import ControllerClient
from tests.system.daemons import ROOT

SOURCE = ROOT / "examples" / "c_client" / "vehicle_mpc_client.c"
INSTALL = "apt-get install libzmq3-dev libmsgpack-dev (or libmsgpack-c-dev)"


def build_flags() -> list[str]:
    if shutil.which("cc") is None or shutil.which("pkg-config") is None:
        pytest.skip(f"no C compiler or pkg-config; {INSTALL}")
    for msgpack in ("msgpack-c", "msgpack"):  # the package's name changed with msgpack-c 6
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libzmq", msgpack],
                               capture_output=True, text=True)
        if flags.returncode == 0:
            return flags.stdout.split()
    pytest.skip(f"libzmq or msgpack-c development files not found by pkg-config; {INSTALL}")


@pytest.mark.slow
def test_the_c_client_drives_a_real_daemon(start_daemon, tmp_path: Path) -> None:
    flags = build_flags()
    binary = tmp_path / "vehicle_mpc_client"
    built = subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(SOURCE), *flags],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    daemon = start_daemon()
    run = subprocess.run([str(binary), daemon.endpoint, "10"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "pong model=kinematic" and lines[1].startswith("reset episode=")
    steps = [line for line in lines if line.startswith("step seq=")]
    assert len(steps) == 10 and all("status=ok" in line for line in steps), run.stdout
    assert lines[-1] == "stats steps=10 errors=0", run.stdout
    with ControllerClient(daemon.endpoint) as client:  # the daemon saw one car, served it fully
        stats = client.stats()
    assert stats["steps"] == 10 and stats["errors"] == 0
