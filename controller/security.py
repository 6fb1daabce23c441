"""Transport security: loopback by default, CURVE with an allow-list for anything else.

    python -m controller.security keygen keys daemon       # keys/daemon.key, daemon.key_secret
    python -m controller.security keygen keys/clients car  # one pair per client

The daemon loads its secret key (``security.server_secret_key``) and allows exactly the
client public keys (``*.key``) in ``security.client_keys_dir``; a client with another key,
or without CURVE, never gets a reply. The allow-list is read once, at start.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict, Field, model_validator
from zmq.auth.thread import ThreadAuthenticator

#: The ZAP domain of the daemon's socket. A named domain (not "*") lets the socket enforce
#: it, so that CURVE fails closed if the authenticator thread is ever gone.
ZAP_DOMAIN = "vehicle-mpc"


class SecurityConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    server_secret_key: str | None = Field(
        None, description="CURVE secret key file of the daemon (name.key_secret)"
    )
    client_keys_dir: str | None = Field(
        None, description="directory of the allowed client public keys (*.key)"
    )
    allow_insecure_remote: bool = Field(
        False, description="serve a non-loopback address without CURVE (trusted networks only)"
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> SecurityConfig:
        # Half a CURVE setup is a mistake, not a choice: say so at load time, not at bind.
        if (self.server_secret_key is None) != (self.client_keys_dir is None):
            raise ValueError(
                "server_secret_key and client_keys_dir go together: set both or neither"
            )
        return self

    @property
    def curve(self) -> bool:
        return self.server_secret_key is not None


class InsecureBindError(ValueError):
    pass


def is_loopback(endpoint: str) -> bool:
    """ipc:// and inproc:// are local; tcp:// is local on 127.0.0.0/8, ::1 or localhost.

    Anything else (``*``, ``0.0.0.0``, an interface name, a host name, another transport)
    counts as reachable from outside.
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return False
    scheme = scheme.lower()
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    try:
        host = urlsplit(f"//{rest}").hostname or ""
    except ValueError:  # e.g. an unbalanced "[" in an IPv6 literal
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1
    return address.is_loopback


def check_bind_allowed(endpoint: str, security: SecurityConfig) -> None:
    """InsecureBindError for a non-loopback endpoint without CURVE, unless explicitly allowed."""
    if is_loopback(endpoint) or security.curve or security.allow_insecure_remote:
        return
    raise InsecureBindError(
        f"refusing to bind {endpoint} without CURVE keys: set security.server_secret_key and "
        "security.client_keys_dir (python -m controller.security keygen), or "
        "security.allow_insecure_remote=true on a trusted network"
    )


def configure_curve_server(
    socket: zmq.Socket, context: zmq.Context, security: SecurityConfig
) -> ThreadAuthenticator | None:
    """Make ``socket`` (not yet bound) a CURVE server allowing only the configured client keys.

    Returns the running authenticator (stop it after closing the socket), or None when
    ``security`` configures no CURVE.
    """
    if not security.curve:
        return None
    assert security.server_secret_key is not None and security.client_keys_dir is not None
    keys_dir = Path(security.client_keys_dir)
    if not keys_dir.is_dir():
        raise ValueError(f"security.client_keys_dir {keys_dir} is not a directory")
    if not any(keys_dir.glob("*.key")):
        raise ValueError(f"security.client_keys_dir {keys_dir} holds no client public keys (*.key)")
    key_file = security.server_secret_key
    try:
        public, secret = zmq.auth.load_certificate(key_file)
    except (OSError, ValueError) as e:
        raise ValueError(f"security.server_secret_key: cannot load {key_file}: {e}") from None
    if secret is None:
        raise ValueError(f"security.server_secret_key {key_file} holds no secret key")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys_dir))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    socket.zap_domain = ZAP_DOMAIN.encode()
    # Fail closed: without a ZAP handler libzmq would accept a CURVE client with any key.
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    return auth


def configure_curve_client(
    socket: zmq.Socket, client_secret_file: str, server_public_file: str
) -> None:
    """Give a client ``socket`` (before connect) its key pair and the daemon's public key."""
    public, secret = zmq.auth.load_certificate(client_secret_file)
    if secret is None:
        raise ValueError(f"{client_secret_file} holds no secret key")
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public


def generate_keys(directory: str | Path, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """(public, secret) key files ``name.key`` and ``name.key_secret`` in ``directory``.

    Refuses to replace an existing pair unless ``overwrite``: a replaced daemon key locks out
    every client, a replaced client key locks out that client.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name {name!r} must be a plain file name")
    directory = Path(directory)
    pair = (directory / f"{name}.key", directory / f"{name}.key_secret")
    existing = [p for p in pair if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True (--force) to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)  # the secret key is a credential
    return Path(public), Path(secret)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controller.security", description="CURVE keys for the controller daemon"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser(
        "keygen", help="create a CURVE key pair: DIR/NAME.key and DIR/NAME.key_secret"
    )
    keygen.add_argument("directory", help="where to write the pair (created if absent)")
    keygen.add_argument("name", help="file name stem, e.g. daemon or car1")
    keygen.add_argument("--force", action="store_true", help="replace an existing pair")
    args = parser.parse_args(argv)
    try:
        public, secret = generate_keys(args.directory, args.name, overwrite=args.force)
    except (FileExistsError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
