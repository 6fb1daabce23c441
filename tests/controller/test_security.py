"""Transport security: loopback detection, refused insecure binds, and CURVE on real sockets
(127.0.0.1, random ports, bounded waits, linger 0)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq
from pydantic import ValidationError

from controller import protocol as wire
from controller.protocol_client import ControllerClient
from controller.security import (
    InsecureBindError,
    SecurityConfig,
    check_bind_allowed,
    configure_curve_server,
    generate_keys,
    is_loopback,
    main,
)

NO_REPLY_S = 0.5


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:5555",
        "tcp://127.4.5.6:5555",
        "tcp://localhost:5555",
        "tcp://LOCALHOST:5555",
        "tcp://[::1]:5555",
        "tcp://[::ffff:127.0.0.1]:5555",
        "tcp://127.0.0.1:*",
        "ipc:///tmp/controller.sock",
        "inproc://controller",
    ],
)
def test_local_endpoints(endpoint: str) -> None:
    assert is_loopback(endpoint)


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://0.0.0.0:5555",
        "tcp://*:5555",
        "tcp://192.168.1.10:5555",
        "tcp://[::]:5555",
        "tcp://eth0:5555",
        "tcp://controller.example.com:5555",
        "tcp://128.0.0.1:5555",
        "tcp://[::1:5555",
        "udp://127.0.0.1:5555",
        "ws://127.0.0.1:5555",
        "127.0.0.1:5555",
        "",
    ],
)
def test_remote_or_unknown_endpoints(endpoint: str) -> None:
    assert not is_loopback(endpoint)


def test_non_loopback_bind_needs_curve_or_an_explicit_opt_out(tmp_path: Path) -> None:
    with pytest.raises(
        InsecureBindError, match="refusing to bind tcp://0.0.0.0:5555 without CURVE"
    ):
        check_bind_allowed("tcp://0.0.0.0:5555", SecurityConfig())
    check_bind_allowed("tcp://127.0.0.1:5555", SecurityConfig())
    check_bind_allowed("tcp://0.0.0.0:5555", SecurityConfig(allow_insecure_remote=True))
    curve = SecurityConfig(
        server_secret_key=str(tmp_path / "d.key_secret"), client_keys_dir=str(tmp_path)
    )
    check_bind_allowed("tcp://0.0.0.0:5555", curve)


def test_half_a_curve_setup_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="set both or neither"):
        SecurityConfig(server_secret_key="keys/daemon.key_secret")
    with pytest.raises(ValidationError, match="set both or neither"):
        SecurityConfig(client_keys_dir="keys/clients")
    with pytest.raises(ValidationError):
        SecurityConfig(allow_insecure_remote=True, extra_key=1)  # type: ignore[call-arg]


def test_key_generation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public, secret = generate_keys(tmp_path / "keys", "daemon")
    assert (public.name, secret.name) == ("daemon.key", "daemon.key_secret")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    before = secret.read_bytes()
    with pytest.raises(FileExistsError):
        generate_keys(tmp_path / "keys", "daemon")
    assert secret.read_bytes() == before
    assert main(["keygen", str(tmp_path / "keys"), "daemon"]) == 1  # refuses to overwrite
    assert main(["keygen", str(tmp_path / "keys"), "daemon", "--force"]) == 0
    assert secret.read_bytes() != before and "public key:" in capsys.readouterr().out
    with pytest.raises(ValueError):
        generate_keys(tmp_path, "../escape")


def test_configure_curve_server_checks_its_files(tmp_path: Path) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    try:
        assert configure_curve_server(socket, context, SecurityConfig()) is None
        public, secret = generate_keys(tmp_path / "keys", "daemon")
        (tmp_path / "empty").mkdir()
        for keys_dir, key, message in [
            (tmp_path / "absent", secret, "not a directory"),
            (tmp_path / "empty", secret, "holds no client public keys"),
            (tmp_path / "keys", public, "holds no secret key"),
            (tmp_path / "keys", tmp_path / "nope.key_secret", "cannot load"),
        ]:
            with pytest.raises(ValueError, match=message):
                configure_curve_server(
                    socket,
                    context,
                    SecurityConfig(server_secret_key=str(key), client_keys_dir=str(keys_dir)),
                )
    finally:
        socket.close(linger=0)
        context.term()


# -- CURVE on real sockets ---------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    server_public, server_secret = generate_keys(root, "daemon")
    _, car_secret = generate_keys(root / "clients", "car")
    _, stranger_secret = generate_keys(root / "strangers", "intruder")
    return {
        "server_public": server_public,
        "server_secret": server_secret,
        "clients": root / "clients",
        "car": car_secret,
        "stranger": stranger_secret,
    }


@contextmanager
def curve_router(keys: dict[str, Path]) -> Iterator[tuple[str, object]]:
    """A CURVE ROUTER on 127.0.0.1 that answers every ping with a pong."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    security = SecurityConfig(
        server_secret_key=str(keys["server_secret"]), client_keys_dir=str(keys["clients"])
    )
    auth = configure_curve_server(router, context, security)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if router.poll(20):
                *envelope, body = router.recv_multipart()
                request = wire.decode_request(body, wire.InputLimits())
                router.send_multipart(
                    [*envelope, wire.encode(wire.pong_reply(request.seq, "curve"))]
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}", auth
    finally:
        stop.set()
        thread.join(5)
        router.close(linger=0)
        if auth is not None and auth.is_alive():
            auth.stop()
        context.term()


def answered(endpoint: str, curve: tuple[str, str] | None, timeout_s: float) -> bool:
    with ControllerClient(endpoint, timeout_s=timeout_s, curve=curve) as client:
        client.send({"type": "ping", "seq": 1})
        reply = client.receive(1, timeout_s)
        return reply is not None and reply["type"] == "pong"


def test_curve_serves_allowed_keys_only(keys: dict[str, Path]) -> None:
    server = str(keys["server_public"])
    with curve_router(keys) as (endpoint, _):
        assert answered(endpoint, (str(keys["car"]), server), timeout_s=5.0)
        assert not answered(endpoint, (str(keys["stranger"]), server), NO_REPLY_S)
        assert not answered(endpoint, None, NO_REPLY_S)  # no CURVE at all
        # A client that has the wrong idea of the daemon's key fails the handshake too.
        assert not answered(
            endpoint, (str(keys["car"]), str(keys["car"].with_suffix(".key"))), NO_REPLY_S
        )


def test_curve_fails_closed_without_the_authenticator(keys: dict[str, Path]) -> None:
    with curve_router(keys) as (endpoint, auth):
        auth.stop()  # type: ignore[attr-defined]
        assert not answered(endpoint, (str(keys["car"]), str(keys["server_public"])), NO_REPLY_S)
