"""Live view over the Foxglove WebSocket protocol (``python -m controller --foxglove PORT``).

Open Foxglove, "Open connection", ``ws://127.0.0.1:PORT``: the 3D panel shows the topics of
``controller.foxglove_scene`` (track, car, plan) and plots can use ``/controller/step`` (the
step records as JSON, the log's schema). The server is ``foxglove-sdk``'s, on loopback unless
a host is given. Messages are published from the transition log's writer thread, after the
daemon's reply and never on the control path; with no viewer connected a publish costs only a
check. The track is published again every few seconds so that a viewer that connects late
gets it.
"""

from __future__ import annotations

import time
from typing import Any

import foxglove

from controller.foxglove_scene import TOPICS, TRACK, schema, track_update
from controller.translog.schema import STEP_SCHEMA, STEP_SCHEMA_NAME, STEP_TOPIC, encoded

TRACK_EVERY_S = 2.0


class LiveView:
    def __init__(self, address: str, track_record: dict[str, Any]) -> None:
        """``address``: ``PORT`` or ``HOST:PORT`` (host 127.0.0.1 unless given; port 0: any free)."""
        host, _, port = address.rpartition(":")
        self.context = foxglove.Context()
        self.server = foxglove.start_server(
            name="vehicle-mpc", host=host or "127.0.0.1", port=int(port), context=self.context
        )
        fg = schema()
        self.channels = {t: foxglove.Channel(t, schema=fg, message_encoding="protobuf", context=self.context)
                         for t in TOPICS}
        step_schema = foxglove.Schema(name=STEP_SCHEMA_NAME, encoding="jsonschema", data=encoded(STEP_SCHEMA))
        self.channels[STEP_TOPIC] = foxglove.Channel(STEP_TOPIC, schema=step_schema, message_encoding="json",
                                                     context=self.context)
        self.track = track_update(track_record)
        self._track_sent = -TRACK_EVERY_S

    @property
    def port(self) -> int:
        return int(self.server.port)

    def publish(self, messages: list[tuple[str, bytes]], log_time_ns: int) -> None:
        """Send (topic, encoded message) pairs to every subscribed viewer."""
        now = time.monotonic()
        if now - self._track_sent >= TRACK_EVERY_S:
            self._track_sent = now
            self.channels[TRACK].log(self.track, log_time=log_time_ns)
        for topic, data in messages:
            channel = self.channels.get(topic)
            if channel is not None:
                channel.log(data, log_time=log_time_ns)

    def close(self) -> None:
        self.server.stop()
