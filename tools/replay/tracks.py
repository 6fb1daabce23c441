"""Which track to analyse a log on: the one the log records, checked against ``--track``.

Every log file the daemon writes starts with a ``/controller/track`` record
(``controller.track.identity``). Without ``--track`` the replay uses that track; with it, a
track whose content digest differs from the log's is refused (``TrackMismatch``) unless the
caller forces it, because analysing a figure-eight log on the circle reports 47 m of lateral
offset and no lap, which reads like a real result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from controller.track import Track, load_track
from controller.track.identity import digest, from_record
from controller.translog import TRACK_TOPIC, log_files, read_log


class TrackMismatch(ValueError):
    """The track given is not the one the log was driven on, or there is none to use."""


def recorded_tracks(logs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The distinct track records of the log files (by digest), in file order; [] for logs
    written before the daemon recorded its track."""
    found: dict[str, dict[str, Any]] = {}
    for path in log_files(list(logs)):
        for record in read_log(path):  # the track record is each file's first message
            if record.topic == TRACK_TOPIC:
                found.setdefault(str(record.data.get("sha256")), record.data)
            break
    return list(found.values())


def resolve_track(logs: list[str], given: str | None, force: bool = False) -> tuple[Track, str | None]:
    """The track to analyse ``logs`` on, and a warning to print (or None)."""
    records = recorded_tracks(logs)
    if len(records) > 1:
        names = ", ".join(f"{r.get('name')} ({str(r.get('sha256'))[:12]})" for r in records)
        raise TrackMismatch(f"{', '.join(logs)}: the files were driven on different tracks: {names}")
    recorded = records[0] if records else None
    if given is None:
        if recorded is None:
            raise TrackMismatch(
                f"{', '.join(logs)}: the log does not record its track (written before logs carried "
                "it); pass --track NAME_OR_CSV"
            )
        return from_record(recorded), None
    track = load_track(given)
    if recorded is None:
        return track, f"warning: {', '.join(logs)} does not record its track; using --track {given} unchecked"
    if digest(track) == recorded.get("sha256"):
        return track, None
    what = (
        f"--track {given} is not the track {', '.join(logs)} was driven on: the log's is "
        f"{recorded.get('name')} (from {recorded.get('source')}, sha256 {str(recorded.get('sha256'))[:12]}), "
        f"--track's sha256 is {digest(track)[:12]}"
    )
    if not force:
        raise TrackMismatch(what + "; leave out --track to use the log's, or add --force-track")
    return track, f"warning: {what}; analysing on --track as forced"
