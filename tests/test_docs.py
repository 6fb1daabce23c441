"""The docs keep up with the code: every config key is in docs/config.md and
configs/daemon.yaml, every command-line flag is in the docs, the analysis extra has what the
docs use."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from controller.config import DaemonConfig, _models_in

ROOT = Path(__file__).resolve().parent.parent
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def config_keys(model: type[BaseModel] = DaemonConfig, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every leaf key path; a union (the planner kinds) contributes the keys of each member."""
    keys: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        members = _models_in(field.annotation)
        if members:
            for member in members:
                keys |= config_keys(member, (*prefix, name))
        else:
            keys.add((*prefix, name))
    return keys


KEYS = sorted(config_keys())


def test_the_key_walk_sees_every_planner_kind() -> None:
    assert ("planner", "armijo") in KEYS and ("planner", "mppi", "noise", "knots") in KEYS
    assert ("model", "dtype") in KEYS and ("planner", "ilqr", "mu_max") in KEYS


@pytest.mark.parametrize("key", KEYS, ids=".".join)
def test_every_config_key_is_in_config_md(key: tuple[str, ...]) -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    leaf = re.escape(key[-1])
    assert re.search(rf"`[^`\n]*\b{re.escape(key[0])}\b[^`\n]*`", text), f"{key[0]} not in docs/config.md"
    assert re.search(rf"`[^`\n]*(?<![\w*]){leaf}(?![\w*])[^`\n]*`", text), f"{'.'.join(key)} not in docs/config.md"


@pytest.mark.parametrize("key", KEYS, ids=".".join)
def test_every_config_key_is_in_daemon_yaml(key: tuple[str, ...]) -> None:
    text = (ROOT / "configs" / "daemon.yaml").read_text()
    assert re.search(rf"(^|[\s{{,#]){re.escape(key[-1])}:", text, re.M), f"{'.'.join(key)} not in daemon.yaml"


def help_flags(main, argv: list[str], capsys) -> set[str]:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out)) - {"--help"}


COMMANDS = [
    ("controller.__main__", "parse_args", []),
    ("controller.client", "parse_args", []),
    ("sim.__main__", "main", ["demo"]),
    ("sim.__main__", "main", ["drive"]),
    ("tools.sysid.__main__", "main", ["fit"]),
    ("tools.sysid.__main__", "main", ["watch"]),
    ("tools.sysid.__main__", "main", ["ladder"]),
    ("sim.__main__", "main", ["ladder"]),
    ("tools.replay.__main__", "main", ["report"]),
    ("tools.replay.__main__", "main", ["compare"]),
    ("tools.replay.__main__", "main", ["export"]),
    ("controller.translog.__main__", "main", ["export"]),
]


def cli_section(command: str) -> str:
    """The part of docs/cli.md under the heading that names ``command``."""
    text = (ROOT / "docs" / "cli.md").read_text()
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        heading = section.splitlines()[0]
        if re.search(rf"`python -m {re.escape(command)}( \w+)?`", heading) or f"`python -m {command}`" in heading:
            return section
    raise AssertionError(f"docs/cli.md has no section for python -m {command}")


@pytest.mark.parametrize("module,function,argv", COMMANDS, ids=[f"{m} {' '.join(a)}" for m, _, a in COMMANDS])
def test_every_flag_is_documented(module: str, function: str, argv: list[str], capsys) -> None:
    import importlib

    main = getattr(importlib.import_module(module), function)
    command = " ".join([module.removesuffix(".__main__"), *argv])
    section = cli_section(command) if argv else cli_section(module.removesuffix(".__main__"))
    missing = sorted(f for f in help_flags(main, argv, capsys) if not re.search(rf"`{f}(?![\w-])", section))
    assert not missing, f"{command}: flags missing from docs/cli.md {missing}"


def test_the_analysis_extra_has_what_the_docs_use() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in extras["analysis"]}
    assert {"pandas", "pyarrow", "matplotlib"} <= names
