"""Where the shared test data lives: $VEHICLE_MPC_SHARED, else a ``shared/`` folder beside the
checkout (as in CI), found by walking up from here.

The real TUM tracks (LGPL, not shipped in this repository) are a convenience: a clone without
them still tests itself, and the tests that need one skip with the reason (``shared_track``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MISSING_REASON = (
    "real TUM tracks not found: no shared/tracks above the checkout and VEHICLE_MPC_SHARED unset"
)


def shared_tracks() -> Path | None:
    """The folder of the real tracks, or None when there is none."""
    env = os.environ.get("VEHICLE_MPC_SHARED")
    if env:
        candidate = Path(env) / "tracks"
        return candidate if candidate.is_dir() else None
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "tracks"
        if candidate.is_dir():
            return candidate
    return None


def shared_track(name: str) -> Path:
    """The real track ``name`` (e.g. ``Zandvoort``); skips the calling test when it is absent."""
    folder = shared_tracks()
    if folder is None or not (folder / f"{name}.csv").is_file():
        pytest.skip(f"{MISSING_REASON} ({name}.csv)")
    return folder / f"{name}.csv"
