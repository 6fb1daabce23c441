"""Transport security: loopback by default, CURVE with an allow-list for anything else.

    python -m controller.security keygen keys/ daemon     # keys/daemon.key, daemon.key_secret
    python -m controller.security keygen keys/clients car  # one pair per client

The daemon loads its secret key (``security.server_secret_key``) and allows exactly the
client public keys in ``security.client_keys_dir``; a client with another key gets no service.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from controller.config import SecuritySettings


class InsecureBindError(ValueError):
    pass


def is_loopback(endpoint: str) -> bool:
    """ipc:// and inproc:// are local; tcp:// is local on 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(f"//{rest}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: reachable from outside


def check_bind_allowed(endpoint: str, security: SecuritySettings) -> None:
    if is_loopback(endpoint) or security.curve or security.allow_insecure_remote:
        return
    raise InsecureBindError(
        f"refusing to bind {endpoint} without CURVE keys: set security.server_secret_key and "
        "security.client_keys_dir (python -m controller.security keygen), or "
        "security.allow_insecure_remote=true on a trusted network"
    )


def configure_curve_server(
    socket: zmq.Socket, context: zmq.Context, security: SecuritySettings
) -> ThreadAuthenticator | None:
    """Make ``socket`` a CURVE server allowing only the configured client keys."""
    if not security.curve:
        return None
    if not security.client_keys_dir:
        raise ValueError("security.client_keys_dir is required with a server key")
    keys_dir = Path(security.client_keys_dir)
    if not keys_dir.is_dir():
        raise ValueError(f"security.client_keys_dir {keys_dir} is not a directory")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys_dir))
    public, secret = zmq.auth.load_certificate(security.server_secret_key)
    if secret is None:
        auth.stop()
        raise ValueError(f"{security.server_secret_key} holds no secret key")
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth


def configure_curve_client(socket: zmq.Socket, client_secret_file: str, server_public_file: str) -> None:
    public, secret = zmq.auth.load_certificate(client_secret_file)
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public


def generate_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """(public, secret) key files ``name.key`` and ``name.key_secret`` in ``directory``."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    return Path(public), Path(secret)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.security")
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="create a CURVE key pair")
    keygen.add_argument("directory")
    keygen.add_argument("name")
    args = parser.parse_args(argv)
    public, secret = generate_keys(args.directory, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
