"""docs/protocol.md's bytes on the wire are what the encoders produce today."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_hex_dumps_are_the_encoders_output() -> None:
    render = runpy.run_path(str(ROOT / "examples" / "protocol_hexdump.py"))["render"]
    doc = (ROOT / "docs" / "protocol.md").read_text()
    block = re.search(r"<!-- hexdump:begin -->\n```\n(.*?)\n```\n<!-- hexdump:end -->", doc, re.S)
    assert block, "docs/protocol.md has no hexdump block"
    assert block.group(1) == render(), "regenerate with: python examples/protocol_hexdump.py"


def test_a_dumped_request_decodes_as_documented() -> None:
    import msgpack

    from controller import protocol as wire
    from controller.config import load_config

    messages = runpy.run_path(str(ROOT / "examples" / "protocol_hexdump.py"))["MESSAGES"]
    step = dict(messages)[next(t for t, _ in messages if t.startswith("step request"))]
    request = wire.Decoder(load_config().limits)(step)
    assert isinstance(request, wire.Step) and request.seq == 2 and request.stamp == 0.05
    reply = msgpack.unpackb(dict(messages)[next(t for t, _ in messages if t.startswith("action reply"))])
    assert wire.parse_reply(reply).type == "action"
