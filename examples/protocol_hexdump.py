"""Print the hex dumps of docs/protocol.md ("Bytes on the wire") from the real encoders.

    python examples/protocol_hexdump.py

Requests are packed as the packaged client packs them (``msgpack.packb``: str for strings,
the smallest integer, float64); replies by the daemon's own ``controller.protocol.encode``.
tests/test_protocol_doc.py holds the doc to this output.
"""

from __future__ import annotations

import msgpack

from controller import protocol as wire

STATE = {"x": 1.0, "y": 2.0, "yaw": 0.1, "v": 9.5, "steer": 0.02}

MESSAGES: list[tuple[str, bytes]] = [
    ('ping request  {"type": "ping", "seq": 1}', msgpack.packb({"type": "ping", "seq": 1})),
    ('pong reply    {"type": "pong", "version": 1, "seq": 1, "model": "kinematic"}',
     wire.encode(wire.pong_reply(1, "kinematic"))),
    ('step request  {"type": "step", "seq": 2, "stamp": 0.05, "state": ' + str(STATE).replace("'", '"') + "}",
     msgpack.packb({"type": "step", "seq": 2, "stamp": 0.05, "state": STATE})),
    ('action reply  {"type": "action", "version": 1, "seq": 2, "status": "ok", "action": '
     '{"steer_rate": 0.05, "accel": 0.8}, "solve_ms": 1.5, "model": "kinematic", "cost": 12.5}',
     wire.encode(wire.action_reply(2, "ok", 0.05, 0.8, 1.5, "kinematic", None, 12.5))),
]


def hexdump(data: bytes) -> str:
    """xxd-style: offset, 16 bytes in hex, the printable ones as text."""
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {hexes:<47}  {text}")
    return "\n".join(lines)


def render() -> str:
    blocks = []
    for title, data in MESSAGES:
        blocks.append(f"{title}  ({len(data)} bytes)\n{hexdump(data)}")
    return "\n\n".join(blocks)


if __name__ == "__main__":
    print(render())
