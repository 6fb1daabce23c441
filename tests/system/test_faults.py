"""Faults of the log made visible: an unwritable log directory and a full disk show in stats,
a full disk creates a bounded number of files, and the car is served throughout."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sim.__main__ import log_warnings
from sim.remote import ControllerClient

STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}
FAST_LOG = ["log.rotate_s=0.2", "log.flush_s=0.1"]


def make_unwritable(directory: Path) -> str:
    """A real fault on ``directory``: immutable (chattr +i, which binds root too) where the
    file system allows it, else the directory moved away and a plain file put in its place
    (creating a file under it then fails with ENOTDIR, for root as for anyone)."""
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0:
        return "immutable"
    directory.rename(directory.with_name(directory.name + "-moved"))
    directory.write_text("not a directory")
    return "replaced by a file"


def restore(directory: Path, how: str) -> None:
    if how == "immutable":
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True)


def test_unwritable_log_directory_shows_in_stats_within_a_second(start_daemon, tmp_path) -> None:
    daemon = start_daemon(FAST_LOG)
    with ControllerClient(daemon.endpoint) as client:
        seq, stamp = 0, 0.0

        def step() -> None:
            nonlocal seq, stamp
            seq, stamp = seq + 1, stamp + 0.05
            assert client.step(seq, stamp, STATE, timeout_s=5.0).status == "ok"

        for _ in range(10):
            step()
        assert client.stats()["log"]["write_errors"] == 0
        how = make_unwritable(daemon.log_dir)
        try:
            faulted = time.perf_counter()
            while True:
                step()  # the car is still served
                health = client.stats()["log"]
                if health["write_errors"]:
                    break
                assert time.perf_counter() - faulted < 1.0, f"not in stats after 1 s ({how}): {health}"
                time.sleep(0.02)
            for _ in range(10):
                step()
                time.sleep(0.02)
            health = client.stats()["log"]
            assert health["records_dropped"] >= 5 and "open" in health["last_error"], health
            assert health["last_error_time"] > time.time() - 5
            assert log_warnings(client.stats())  # the simulator's summary warns
        finally:
            restore(daemon.log_dir, how)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: a real full disk. Skips where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_full_disk_makes_a_bounded_number_of_files_and_the_car_is_served(start_daemon, tiny_disk, tmp_path) -> None:
    daemon = start_daemon(FAST_LOG, log_dir=tiny_disk / "logs")
    with ControllerClient(daemon.endpoint) as client:
        started = time.perf_counter()
        seq = 0
        while time.perf_counter() - started < 3.0:  # ~700 B a step: full within a second
            seq += 1
            assert client.step(seq, 0.01 * seq, STATE, timeout_s=5.0).status == "ok"
            time.sleep(0.005)
        health = client.stats()["log"]
    assert daemon.stop() == 0
    assert health["write_errors"] >= 1 and health["records_dropped"] > 0, health
    files = sorted((tiny_disk / "logs").glob("*.mcap"))
    # One attempt per back-off (0.25 s, doubling): a handful, never one per record.
    assert 1 <= len(files) <= 8 and len(files) == health["files"], ([f.name for f in files], health)
    lines = [l for l in (tmp_path / next(p.name for p in tmp_path.glob("daemon-*.out"))).read_text().splitlines() if "transition log" in l and "failed" in l]
    assert 1 <= len(lines) <= 6, lines  # rate-limited, with counts
