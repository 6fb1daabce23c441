"""The wheel is the product: it holds every file the code reads at run time, and works alone.

Builds the wheel from a copy of the source tree (no network: the running environment's
setuptools, no build isolation), checks its contents, then imports the unpacked wheel from
another directory, with the source tree off the path, and reads the shipped config and vehicle
parameters and builds the native kernel from the packaged source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "runs", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".hypothesis", "tests")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools in this environment")
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "src", ignore=SKIP)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
         str(work / "src")],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    (built,) = (work / "dist").glob("vehicle_mpc-*.whl")
    return built


def test_wheel_holds_the_configs_the_kernel_source_and_every_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "configs/daemon.yaml", "configs/vehicles/passenger_car.yaml", "configs/vehicles/f1tenth.yaml",
        "controller/native/rollout.c", "controller/__main__.py", "sim/__main__.py", "vehicle_models/kinematic.py",
        "controller/planners/mppi.py", "controller/track/__init__.py", "controller/translog/__init__.py",
    ):
        assert needed in names, f"{needed} missing from {wheel.name}"
    packages = {str(p.parent.relative_to(ROOT)) for p in ROOT.glob("*/**/__init__.py")
                if p.parts[len(ROOT.parts)] in ("controller", "vehicle_models", "sim", "tools", "configs")}
    missing = {p for p in packages if f"{p}/__init__.py" not in names}
    assert not missing, f"packages missing from the wheel: {sorted(missing)}"
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_unpacked_wheel_runs_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import controller, controller.config as c, vehicle_models.params as p, controller.native.build as b\n"
        "print(controller.__file__)\n"
        "print(c.load_config().vehicle, p.load_params('passenger_car').wheelbase)\n"
        "print(b.build())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "VEHICLE_MPC_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    where, loaded, built = result.stdout.splitlines()
    assert where.startswith(str(site)), f"imported {where}, not the wheel"
    assert loaded.split()[0] == "passenger_car"
    assert Path(built).is_file() and Path(built).is_relative_to(tmp_path / "cache")
