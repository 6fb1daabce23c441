"""The controller as a Foxglove 3D scene: the track once, the car and its predicted plan per step.

Topics (``foxglove.SceneUpdate``, protobuf, frame ``world`` = the track's x, y in metres):

- ``/foxglove/track``: centre line (dashed grey) and both edges, written once per log file;
- ``/foxglove/car``: the car as a box at the state the daemon was sent (length 4.5 m, the
  vehicle's width), coloured by status (green ok, orange fallback, red stop);
- ``/foxglove/plan``: the predicted path of the plan the action came from, a line from the car.

The predicted path is the kinematic bicycle (vehicle_models/kinematic.py, Euler steps of the
planner's dt) driven by the plan's actions from the logged state: plain floats, about 50 us
for H = 40 on the log's writer thread, never on the control path. The messages are built with
``foxglove-sdk`` (``pip install -e '.[foxglove]'``); they are what the MCAP log carries
(``TransitionLog(scene=...)``) and what the live view streams (``controller.foxglove_live``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from foxglove.messages import (
    Color,
    CubePrimitive,
    LinePrimitive,
    LinePrimitiveLineType,
    Point3,
    Pose,
    Quaternion,
    SceneEntity,
    SceneUpdate,
    Timestamp,
    Vector3,
)

TRACK = "/foxglove/track"
CAR = "/foxglove/car"
PLAN = "/foxglove/plan"
TOPICS = (TRACK, CAR, PLAN)
FRAME = "world"
CAR_LENGTH_M = 4.5
CAR_HEIGHT_M = 1.5
_STATUS_COLOUR = {"ok": (0.2, 0.8, 0.3), "fallback": (1.0, 0.6, 0.1), "stop": (0.9, 0.1, 0.1)}


def schema() -> Any:
    """The ``foxglove.Schema`` of every topic (name, encoding "protobuf", descriptor bytes)."""
    return SceneUpdate.get_schema()


def _yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(0.5 * yaw), w=math.cos(0.5 * yaw))


def _stamp(seconds: float) -> Timestamp:
    whole = math.floor(seconds)
    return Timestamp(sec=int(whole), nsec=int((seconds - whole) * 1e9))


def _line(points: Sequence[tuple[float, float]], kind: Any, rgba: tuple[float, ...], thickness: float) -> LinePrimitive:
    return LinePrimitive(
        type=kind, thickness=thickness, scale_invariant=False,
        points=[Point3(x=x, y=y, z=0.0) for x, y in points], color=Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]),
    )


def track_update(record: dict[str, Any]) -> bytes:
    """The track record (``controller.track.identity.describe``) as a SceneUpdate."""
    table = record["geometry"]
    n = len(table)
    centre, left, right = [], [], []
    for i, (x, y, w_right, w_left) in enumerate(table):
        nx_, ny_ = table[(i + 1) % n][:2]
        px, py = table[i - 1][:2]
        heading = math.atan2(ny_ - py, nx_ - px)
        sx, sy = -math.sin(heading), math.cos(heading)  # unit normal to the left
        centre.append((x, y))
        left.append((x + w_left * sx, y + w_left * sy))
        right.append((x - w_right * sx, y - w_right * sy))
    entity = SceneEntity(
        frame_id=FRAME, id="track", frame_locked=True,
        lines=[
            _line(left, LinePrimitiveLineType.LineLoop, (0.9, 0.9, 0.9, 1.0), 0.3),
            _line(right, LinePrimitiveLineType.LineLoop, (0.9, 0.9, 0.9, 1.0), 0.3),
            _line(centre[::2], LinePrimitiveLineType.LineList, (0.6, 0.6, 0.6, 0.8), 0.1),  # dashes
        ],
    )
    return SceneUpdate(entities=[entity]).encode()


class SceneEncoder:
    """Per-step scene messages for one vehicle and planner step."""

    def __init__(self, wheelbase: float, ref_to_rear: float, width: float, plan_dt: float) -> None:
        self.wheelbase, self.ref_to_rear, self.width, self.plan_dt = wheelbase, ref_to_rear, width, plan_dt

    def predicted_path(self, state: dict[str, Any], plan: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
        """Positions along the plan from ``state`` (kinematic bicycle, Euler steps)."""
        x, y, yaw = float(state["x"]), float(state["y"]), float(state["yaw"])
        v, steer = float(state["v"]), float(state["steer"])
        path, dt, ratio = [(x, y)], self.plan_dt, self.ref_to_rear / self.wheelbase
        for steer_rate, accel in plan:
            tan_delta = math.tan(steer)
            beta = math.atan(ratio * tan_delta)
            x += v * math.cos(yaw + beta) * dt
            y += v * math.sin(yaw + beta) * dt
            yaw += v * math.cos(beta) * tan_delta / self.wheelbase * dt
            steer += float(steer_rate) * dt
            v = max(0.0, v + float(accel) * dt)
            path.append((x, y))
        return path

    def step_updates(self, record: dict[str, Any], plan: Sequence[Sequence[float]] | None) -> list[tuple[str, bytes]]:
        """(topic, SceneUpdate bytes) for the car and, with a plan, its predicted path."""
        state = record.get("state") or {}
        if any(not isinstance(state.get(k), (int, float)) for k in ("x", "y", "yaw", "v", "steer")):
            return []
        stamp = _stamp(float(record.get("received", 0.0)))
        r, g, b = _STATUS_COLOUR.get(str(record.get("status")), (0.5, 0.5, 0.5))
        pose = Pose(position=Vector3(x=float(state["x"]), y=float(state["y"]), z=0.5 * CAR_HEIGHT_M),
                    orientation=_yaw_quaternion(float(state["yaw"])))
        car = SceneEntity(
            timestamp=stamp, frame_id=FRAME, id="car",
            cubes=[CubePrimitive(pose=pose, size=Vector3(x=CAR_LENGTH_M, y=self.width, z=CAR_HEIGHT_M),
                                 color=Color(r=r, g=g, b=b, a=0.9))],
        )
        updates = [(CAR, SceneUpdate(entities=[car]).encode())]
        if plan is not None and len(plan):
            plan = plan.tolist() if hasattr(plan, "tolist") else plan  # plain floats: 5x faster below
            line = _line(self.predicted_path(state, plan), LinePrimitiveLineType.LineStrip, (0.2, 0.6, 1.0, 1.0), 0.25)
            entity = SceneEntity(timestamp=stamp, frame_id=FRAME, id="plan", lines=[line])
            updates.append((PLAN, SceneUpdate(entities=[entity]).encode()))
        return updates
