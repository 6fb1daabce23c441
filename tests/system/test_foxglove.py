"""Foxglove: the log carries the 3D scene (track once, car and plan per step) as
foxglove.SceneUpdate, decoded here with the schema the file itself holds; the live view streams
the same topics to a real WebSocket client of the Foxglove protocol."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from mcap.reader import make_reader

from controller.foxglove_scene import SceneEncoder
from controller.protocol_client import ControllerClient
from controller.track import load_track
from controller.track.identity import describe
from controller.translog import TransitionLog, load_steps
from sim.__main__ import free_port
from tests.system.daemons import FAST, ROOT, stop_process

STATE = {"x": 50.0, "y": 0.0, "yaw": 0.0, "v": 10.0, "steer": 0.0}


def message_class(schema_name: str, descriptor_set: bytes):
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


def test_the_log_carries_the_track_once_and_car_and_plan_per_step(tmp_path: Path) -> None:
    track = load_track("circle")
    scene = SceneEncoder(wheelbase=2.5, ref_to_rear=1.25, width=1.8, plan_dt=0.05)
    plan = np.tile([0.0, 1.0], (20, 1))  # straight on, speeding up
    with TransitionLog(tmp_path, track=describe(track, "circle"), scene=scene) as log:
        for k in range(10):
            state = {**STATE, "x": 50.0 + k}
            log.step({"episode": 0, "seq": k, "stamp": k * 0.05, "received": 100 + k * 0.05,
                      "replied": 100.001 + k * 0.05, "state": state, "action": {"steer_rate": 0.0, "accel": 1.0},
                      "status": "ok", "solve_ms": 1.0}, plan)
    assert len(load_steps(tmp_path)) == 10  # the JSON records read as before
    with open(log.files[0], "rb") as f:
        messages = list(make_reader(f).iter_messages())
    by_topic: dict[str, list] = {}
    for schema, channel, message in messages:
        by_topic.setdefault(channel.topic, []).append((schema, channel, message))
    assert {t: len(v) for t, v in by_topic.items() if t.startswith("/foxglove")} == {
        "/foxglove/track": 1, "/foxglove/car": 10, "/foxglove/plan": 10}
    schema, channel, _ = by_topic["/foxglove/car"][0]
    assert (schema.name, schema.encoding, channel.message_encoding) == ("foxglove.SceneUpdate", "protobuf", "protobuf")
    SceneUpdate = message_class(schema.name, schema.data)
    car = SceneUpdate.FromString(by_topic["/foxglove/car"][3][2].data).entities[0]
    assert car.id == "car" and car.frame_id == "world"
    assert car.cubes[0].pose.position.x == pytest.approx(53.0) and car.cubes[0].size.y == pytest.approx(1.8)
    line = SceneUpdate.FromString(by_topic["/foxglove/plan"][0][2].data).entities[0].lines[0]
    xs = [p.x for p in line.points]
    assert len(xs) == 21 and xs[0] == pytest.approx(50.0)
    assert xs[-1] == pytest.approx(50.0 + sum((10.0 + 0.05 * k) * 0.05 for k in range(20)), rel=1e-6)
    track_scene = SceneUpdate.FromString(by_topic["/foxglove/track"][0][2].data).entities[0]
    left = [math.hypot(p.x, p.y - 50.0) for p in track_scene.lines[0].points]
    assert min(left) == pytest.approx(46.0, abs=0.05) or max(left) == pytest.approx(54.0, abs=0.05)


class LiveDaemon:
    def __init__(self, tmp: Path) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "--bind", self.endpoint, "--log-dir", str(tmp / "logs"),
             "--foxglove", str(self.port), *(f"--set={s}" for s in FAST)],
            cwd=ROOT, stdout=open(tmp / "out", "w"), stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.mark.slow
def test_the_live_view_streams_the_scene_to_a_websocket_client(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    daemon = LiveDaemon(tmp_path)
    try:
        with ControllerClient(daemon.endpoint) as client:
            client.wait_ready(120)
            with connect(f"ws://127.0.0.1:{daemon.port}", subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"],
                         open_timeout=10) as ws:
                channels = {}
                deadline = time.monotonic() + 10
                while "/foxglove/car" not in channels and time.monotonic() < deadline:
                    frame = ws.recv(timeout=5)
                    if isinstance(frame, str):
                        info = json.loads(frame)
                        if info.get("op") == "advertise":
                            channels.update({c["topic"]: c for c in info["channels"]})
                assert {"/foxglove/track", "/foxglove/car", "/foxglove/plan", "/controller/step"} <= set(channels)
                car = channels["/foxglove/car"]
                ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": car["id"]}]}))
                time.sleep(0.3)  # the subscription reaches the server before the steps
                client.reset()
                for k in range(5):
                    assert client.step(k, k * 0.05, {**STATE, "x": 50.0 + k})["type"] == "action"
                received = []
                while len(received) < 5:
                    frame = ws.recv(timeout=10)
                    if isinstance(frame, bytes) and frame[0] == 0x01:  # message data
                        assert int.from_bytes(frame[1:5], "little") == 7
                        received.append(frame[13:])
        SceneUpdate = message_class(car["schemaName"], base64.b64decode(car["schema"]))
        xs = [SceneUpdate.FromString(m).entities[0].cubes[0].pose.position.x for m in received]
        assert xs == pytest.approx([50.0, 51.0, 52.0, 53.0, 54.0])
    finally:
        daemon.stop()
