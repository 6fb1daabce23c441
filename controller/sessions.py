"""Sessions: one per car, keyed by its ZeroMQ ROUTER identity. Pure bookkeeping, no I/O.

A session holds everything that belongs to one car: its ``CarState`` (warm start, last
action, actions in flight, fallback count), its episode counter and the stamps the staleness
rules compare with. Only a ``step`` opens a session (pings and stats from a monitor never
take a car's place). At most ``max_sessions`` are open; a step from a new client beyond that
is refused with ``busy`` until an open session has been idle for ``idle_s`` (it is then
closed and the newcomer takes its place) or its car said ``bye``.

Session ids are ``<run>.<n>``: ``run`` is random per daemon start and ``n`` counts the
sessions of that run, so ids never repeat across restarts and logs of several runs can be
read together (``controller.translog`` groups step records by session).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from controller.core import CarState


@dataclass(eq=False)
class Session:
    id: str
    identity: bytes  #: the ROUTER identity of the car's socket
    car: CarState
    opened: float  #: daemon clock, Unix time [s]
    last_seen: float  #: receipt time of its last request [s]
    episode: int = 0
    last_stamp: float | None = None  #: sender's stamp of the last step that was not refused
    last_received: float | None = None  #: daemon clock at that step's receipt [s]
    steps: int = 0
    last_served: float = 0.0  #: perf_counter at its last reply (the daemon serves the longest-waiting first)
    last_reply: tuple[int, float, dict[str, Any]] | None = None  #: (seq, stamp, reply) of the last step served

    def new_episode(self) -> int:
        """Reset: a new episode, no warm start, and the stamps start over."""
        self.episode += 1
        self.car.reset()
        self.last_stamp = self.last_received = None
        self.last_reply = None
        return self.episode


class Refused(Exception):
    """No session for this client: the reason is the ``busy`` reply's message."""


class SessionTable:
    def __init__(self, max_sessions: int, idle_s: float, new_car: Callable[[], CarState], run: str | None = None):
        if max_sessions < 1 or idle_s <= 0:
            raise ValueError("max_sessions must be at least 1 and idle_s positive")
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._new_car = new_car
        self.run = run or os.urandom(3).hex()
        self._opened = 0
        self._by_identity: dict[bytes, Session] = {}
        self._by_id: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_identity)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_identity.values()))

    def get(self, identity: bytes) -> Session | None:
        return self._by_identity.get(identity)

    def by_id(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def open(self, identity: bytes, now: float, fits: bool = True) -> tuple[Session, list[Session]]:
        """The client's session, opened if new: (session, sessions closed for idling).

        Raises ``Refused`` when every place is taken by a session seen within ``idle_s``, or
        when ``fits`` is False (the solve budget cannot serve one more car in time).
        """
        session = self._by_identity.get(identity)
        if session is not None:
            session.last_seen = now
            return session, []
        closed: list[Session] = []
        if len(self._by_identity) >= self.max_sessions:
            idle = sorted((s for s in self._by_identity.values() if now - s.last_seen >= self.idle_s), key=lambda s: s.last_seen)
            need = len(self._by_identity) - self.max_sessions + 1
            if len(idle) < need:
                busy = [s.id for s in self._by_identity.values()]
                raise Refused(
                    f"busy: {len(busy)} of max_sessions={self.max_sessions} held by {', '.join(busy)}; "
                    f"retry after {self.idle_s:g} s of silence from one, or its bye"
                )
            for s in idle[:need]:
                closed.append(self.close(s.identity))  # type: ignore[arg-type]
        if not fits and self._by_identity:
            raise Refused(
                f"busy: the solve budget cannot serve {len(self._by_identity) + 1} cars within their deadlines"
            )
        self._opened += 1
        session = Session(f"{self.run}.{self._opened}", identity, self._new_car(), opened=now, last_seen=now)
        self._by_identity[identity] = session
        self._by_id[session.id] = session
        return session, closed

    def close(self, identity: bytes) -> Session | None:
        """End the client's session (bye, or idle); None if it had none."""
        session = self._by_identity.pop(identity, None)
        if session is not None:
            self._by_id.pop(session.id, None)
        return session
