"""The controller is a product of its own: it never imports the simulator, the tools or the
benchmarks (the simulator, tools and tests import the controller, not the other way round)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("sim", "tools", "bench", "tests")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # lazy imports in functions too
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_controller_and_models_never_import_the_simulator_or_tools() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for package in ("controller", "vehicle_models")
        for path in (ROOT / package).rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sim.closed_loop import start_state\n")
    assert "sim.closed_loop" in imported_modules(module)
