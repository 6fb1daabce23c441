"""A spinning car over the real wire: a reply with the recovery, counted in stats; only an
impossible slip (beyond pi) is out of range."""

from __future__ import annotations

from sim.remote import ControllerClient

SPINNING = {"x": 0.0, "y": 0.0, "yaw": 0.3, "v": 14.0, "steer": 0.05, "yaw_rate": 2.4, "slip": -2.9}


def test_spinning_state_gets_the_recovery_not_an_error(start_daemon) -> None:
    daemon = start_daemon()
    with ControllerClient(daemon.endpoint) as client:
        client.reset()
        reply = client.request({"type": "step", "seq": 1, "stamp": 0.0, "state": SPINNING}, 5.0)
        assert reply["type"] == "action", reply
        assert reply["status"] == "stop"
        assert reply["action"] == {"steer_rate": 0.0, "accel": -6.0}
        still = client.request({"type": "step", "seq": 2, "stamp": 0.05, "state": SPINNING}, 5.0)
        assert still["type"] == "action" and still["status"] == "stop"
        impossible = client.request(
            {"type": "step", "seq": 3, "stamp": 0.1, "state": {**SPINNING, "slip": 3.3}}, 5.0
        )
        assert impossible["type"] == "error" and impossible["code"] == "out_of_range"
        stats = client.stats()
    assert stats["recoveries"] == 1 and stats["stops"] == 2
    daemon.stop()
    with open(daemon.output.name) as output:
        assert "recovery: |slip| 2.90 rad" in output.read()  # the daemon's log names it
