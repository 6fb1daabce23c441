"""Where the shared test data lives: $VEHICLE_MPC_SHARED, else a ``shared/`` folder beside the
checkout (as in CI), found by walking up from here."""

from __future__ import annotations

import os
from pathlib import Path


def shared_tracks() -> Path:
    env = os.environ.get("VEHICLE_MPC_SHARED")
    if env:
        return Path(env) / "tracks"
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "tracks"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no shared/tracks beside the checkout; set VEHICLE_MPC_SHARED")
