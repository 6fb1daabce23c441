"""Fixture: start real daemons; every one is stopped (SIGTERM, then SIGKILL) at teardown."""

from __future__ import annotations

import pytest

from tests.system.daemons import FAST, DaemonProcess


@pytest.fixture
def start_daemon(tmp_path):
    started: list[DaemonProcess] = []

    def start(overrides: list[str] = (), wait: bool = True, **kwargs) -> DaemonProcess:
        d = DaemonProcess(tmp_path, [*FAST, *overrides], **kwargs)
        started.append(d)
        if wait:
            d.wait_ready()
        return d

    yield start
    for d in started:
        d.stop()
