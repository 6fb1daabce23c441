"""Tracks: TUM CSV files and generated circuits, fast batched projection, speed reference."""

from __future__ import annotations

from pathlib import Path

from controller.track.generators import BUILTIN, circle, figure_eight, random_circuit
from controller.track.lookup import Projection, TrackLookup
from controller.track.speed_profile import speed_profile
from controller.track.start import start_state
from controller.track.track import Track
from controller.track.tum_csv import TrackFormatError

__all__ = [
    "BUILTIN",
    "Projection",
    "Track",
    "TrackFormatError",
    "TrackLookup",
    "builtin_names",
    "circle",
    "figure_eight",
    "load_track",
    "random_circuit",
    "speed_profile",
    "start_state",
]


def builtin_names() -> list[str]:
    return [*BUILTIN, "random:SEED"]


def load_track(name_or_path: str | Path, spacing: float = 1.0) -> Track:
    """A built-in track (``circle``, ``figure_eight``, ``random``, ``random:SEED``) or a TUM CSV."""
    text = str(name_or_path)
    if text in BUILTIN:
        return BUILTIN[text]()
    if text.startswith("random:"):
        seed = text.split(":", 1)[1]
        if not seed.isdigit():
            raise ValueError(f"track {text!r}: the seed after 'random:' must be a whole number")
        return random_circuit(int(seed))
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(
            f"track {text!r} is neither a built-in ({', '.join(builtin_names())}) nor a file"
        )
    from controller.track import tum_csv

    points, width_right, width_left = tum_csv.read(path)
    return Track.from_centre_line(points, width_left, width_right, spacing, name=path.stem)
