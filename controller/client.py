"""python -m controller.client ping|stats|reload: ask a running daemon, from a shell or a script.

    python -m controller.client ping --endpoint tcp://127.0.0.1:5555          # health check
    python -m controller.client stats --endpoint tcp://127.0.0.1:5555         # JSON on stdout
    python -m controller.client reload --endpoint ipc:///run/vehicle-mpc/admin models/v7 --wait 60

Exit codes (for scripts, systemd ``ExecStartPost``, container health checks):
0 the daemon answered (reload: the new model is in use, with ``--wait``); 1 it answered with
an error (reload: the new model failed its checks and the old one stays); 2 bad usage;
3 no answer within ``--timeout``.

CURVE daemons: ``--curve CLIENT_SECRET_KEY_FILE SERVER_PUBLIC_KEY_FILE`` (docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import zmq

from controller.protocol_client import ControllerClient, DaemonUnavailable

OK, ANSWERED_ERROR, USAGE, UNREACHABLE = 0, 1, 2, 3


def counters(reply: dict[str, Any]) -> dict[str, Any]:
    """A stats reply's counters (the reply is the counters plus type, version and seq)."""
    return {k: v for k, v in reply.items() if k not in ("type", "version", "seq")}


def _print(reply: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(reply, sort_keys=True) if as_json else text, flush=True)


def _error(reply: dict[str, Any]) -> int | None:
    if reply.get("type") == "error":
        print(f"error {reply.get('code')}: {reply.get('message')}", file=sys.stderr)
        return ANSWERED_ERROR
    return None


def ping(client: ControllerClient, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    reply = client.ping(timeout_s=args.timeout)
    code = _error(reply)
    if code is not None:
        return code
    ms = (time.perf_counter() - started) * 1e3
    _print({**reply, "round_trip_ms": ms}, args.json,
           f"pong from {args.endpoint}: model {reply.get('model')}, {ms:.2f} ms")
    return OK


def stats(client: ControllerClient, args: argparse.Namespace) -> int:
    reply = client.stats()
    code = _error(reply)
    if code is not None:
        return code
    print(json.dumps(counters(reply), indent=None if args.json else 2, sort_keys=True), flush=True)
    return OK


def reload(client: ControllerClient, args: argparse.Namespace) -> int:
    before = counters(client.stats())
    reply = client.reload(args.path)
    code = _error(reply)
    if code is not None:
        return code
    if args.wait is None:
        _print(reply, args.json, f"reload started (model {reply.get('model')} in use until the new one is ready)")
        return OK
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        now = counters(client.stats())
        if now.get("reload_failures", 0) > before.get("reload_failures", 0):
            print(f"reload failed: model {now.get('model')} kept (the reason is in the daemon's log)", file=sys.stderr)
            return ANSWERED_ERROR
        if now.get("reloads", 0) > before.get("reloads", 0):
            _print({"type": "reloaded", "model": now.get("model"), "previous": before.get("model")}, args.json,
                   f"reloaded: model {before.get('model')} -> {now.get('model')}")
            return OK
        time.sleep(0.2)
    print(f"reload not finished within {args.wait} s", file=sys.stderr)
    return UNREACHABLE


COMMANDS = {"ping": ping, "stats": stats, "reload": reload}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m controller.client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("path", nargs="?", help="reload: the bundle directory (default: the configured source)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the daemon (its bind or admin_bind)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each answer")
    p.add_argument("--wait", type=float, help="reload: wait up to this long for the new model to be in use")
    p.add_argument("--json", action="store_true", help="one JSON object per answer")
    p.add_argument("--curve", nargs=2, metavar=("CLIENT_SECRET", "SERVER_PUBLIC"), help="CURVE key files")
    args = p.parse_args(argv)
    if args.path is not None and args.command != "reload":
        p.error(f"{args.command} takes no path")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help is 0, bad usage 2
        return int(e.code or 0)
    try:
        with ControllerClient(args.endpoint, timeout_s=args.timeout,
                              curve=tuple(args.curve) if args.curve else None) as client:
            return COMMANDS[args.command](client, args)
    except DaemonUnavailable:
        print(f"no answer from {args.endpoint} within {args.timeout} s", file=sys.stderr)
        return UNREACHABLE
    except (OSError, ValueError, zmq.ZMQError) as e:  # an unreadable key file, a malformed endpoint
        print(f"error: {e}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    raise SystemExit(main())
