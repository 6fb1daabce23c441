"""sd_notify without libsystemd: tell systemd (``Type=notify``) that the daemon is ready.

systemd sets ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) for a
``Type=notify`` service; one datagram ``READY=1`` there marks the unit started. Without the
variable this does nothing, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket


def notify(message: str = "READY=1") -> bool:
    """Send ``message`` to systemd; False when not run under a notify-type unit."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)
    return True
