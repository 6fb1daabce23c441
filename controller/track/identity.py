"""Which track a log was driven on: a record the transition log carries, and its checks.

``describe(track, source)`` is what the daemon writes once at the start of every log file
(topic ``/controller/track``): the track's name, where it came from (a built-in name or the
CSV path given), a content digest, and the resampled geometry itself, so that a log can be
analysed on a machine that does not have the track file. ``digest`` hashes the geometry
rounded to a millimetre: two loads of the same file or built-in agree, a different track
(another file, another ``random:SEED``) does not, whatever its name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from controller.track.track import Track

#: Bump when the record's fields change meaning.
RECORD_VERSION = 1
_MM = 1e-3


def geometry(track: Track) -> np.ndarray:
    """(N, 4) centre line x, y and right, left widths [m], rounded to a millimetre."""
    table = np.column_stack([track.points, track.width_right, track.width_left])
    return np.round(table / _MM) * _MM


def digest(track: Track) -> str:
    """sha256 of the geometry in millimetres (hex)."""
    millimetres = np.round(geometry(track) / _MM).astype("<i8")
    return hashlib.sha256(millimetres.tobytes()).hexdigest()


def describe(track: Track, source: str | Path) -> dict[str, Any]:
    """The log's track record: name, source, sha256, length and geometry (JSON-ready)."""
    return {
        "version": RECORD_VERSION,
        "name": track.name,
        "source": str(source),
        "sha256": digest(track),
        "length_m": float(track.length),
        "columns": ["x_m", "y_m", "w_tr_right_m", "w_tr_left_m"],
        "geometry": geometry(track).tolist(),
    }


def from_record(record: dict[str, Any]) -> Track:
    """The track a record describes: its source where that still gives the same track (a
    built-in, or a file whose content is unchanged), else rebuilt from the stored geometry."""
    from controller.track import load_track

    source = str(record.get("source", ""))
    try:
        track = load_track(source)
        if digest(track) == record.get("sha256"):
            return track
    except (OSError, ValueError):
        pass  # the file is elsewhere on this machine, or no longer parses: use the geometry
    table = np.asarray(record["geometry"], dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 4:
        raise ValueError(f"track record {record.get('name')!r}: geometry is not (N, 4)")
    spacing = float(record.get("length_m", 0.0)) / len(table) or 1.0
    return Track.from_centre_line(
        table[:, :2], table[:, 3], table[:, 2], spacing=spacing, name=str(record.get("name", "track"))
    )
