"""A checkout stays clean and tests itself: the real-track tests skip, with the reason,
when no ``shared/tracks`` is above the checkout (CI has one, so there they run); the daemon
writes its log outside the checkout by default, and a `logs/` folder there is git-ignored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: cannot list the files a clone holds")
    return [line for line in out.stdout.splitlines() if line.startswith(("tests/", "pyproject.toml"))]


@pytest.mark.slow
def test_real_track_tests_skip_with_a_reason_without_shared(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    for name in tracked_files():
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    assert not any((p / "shared" / "tracks").is_dir() for p in clone.parents)
    env = {k: v for k, v in os.environ.items() if k != "VEHICLE_MPC_SHARED"}
    env["PYTHONPATH"] = str(ROOT)  # the package from this checkout, the tests from the clone
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/controller/test_track.py", "-k", "real_tracks_load or brute_force"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout and "6 skipped" in result.stdout, result.stdout
    assert "real TUM tracks not found" in result.stdout, result.stdout


def test_default_log_dir_is_outside_the_checkout_and_logs_are_ignored(monkeypatch) -> None:
    from controller.config import load_config

    monkeypatch.setenv("HOME", "/home/someone")
    path = load_config().log.path
    assert path.is_absolute() and ROOT not in path.parents, path
    assert load_config(overrides=["log.dir=$HOME/x"]).log.path == Path("/home/someone/x")
    ignored = subprocess.run(["git", "check-ignore", "-q", "logs/controller-x.mcap"], cwd=ROOT)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, "logs/ is not git-ignored"
