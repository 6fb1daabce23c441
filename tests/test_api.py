"""The library API: every exported name resolves, docs/api.md names each one, and reading a
log stays free of torch."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["controller", "controller.planners", "vehicle_models", "sim"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_and_is_documented(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    docs = (ROOT / "docs" / "api.md").read_text()
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert f"`{name}`" in docs, f"{package}.{name} is not in docs/api.md"
    with pytest.raises(AttributeError):
        getattr(module, "no_such_name")


def test_reading_a_log_does_not_load_torch() -> None:
    code = "import sys, controller.translog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
