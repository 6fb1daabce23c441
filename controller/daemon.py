"""The controller daemon: a thin ZeroMQ shell around ``control_step`` (docs/protocol.md).

Each car is a session (``controller.sessions``), keyed by its ROUTER identity, with its own
control state; the planner is shared. ``control_step`` holds the staleness rules and the reply
and record mappings; the daemon keeps the sockets, the deferred work and the reload.

One thread serves the sockets. A wake-up reads a round of at most ``DRAIN_ROUND`` messages
(ZeroMQ queues each peer's messages apart and reads them in turn, so a round holds every
waiting car's request however much a flooding peer has queued), then serves the session
holders' messages first and at most ``PER_CLIENT_DRAIN`` of any one client's messages (older
ones beyond that are dropped undecoded and unanswered, counted in ``flood_dropped``; the
client is remembered as a flooder, and while the flood lasts all its messages are dropped
so; rounds are then ``FLOOD_ROUND`` messages, ``FLOOD_PAUSE_S`` apart). Of several step requests from
one client only the newest is planned for (the older get ``stale``): a backlog never yields
old actions. Control requests (ping, reset, stats, reload, bye) are answered in order.
Model reloads are prepared on a worker thread and swapped in between steps; a model that
fails its checks is never swapped in (the old one stays).

The critical path is receive, decode, ``control_step``, reply. Work that can wait (the step's
log record, warnings, the planner's ``prepare()``: noise for the next call) is done after the
reply, and only once no request is waiting: a request that arrives first is served first and
the deferred work runs after it. Log records are still queued in order (before any event that
follows them). Repeated warnings (stale replies to a flood, a busy car) are logged with counts,
at most one line per kind every few seconds. The start-up heap is frozen out of the garbage
collector's view (``gc.freeze``) once warm-up is done, so a collection never walks torch's
import-time objects.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zmq

from controller import protocol as wire
from controller.config import DaemonConfig
from controller.control_step import StepResult, control_step, step_record
from controller.core import ControlCore, StepOutcome
from controller.protocol import ErrorCode, ProtocolError
from controller.ratelog import RateLimitedLog, RateLimiter, Report
from controller.runtime import LoadedModel, Runtime, assemble, newest_bundle
from controller.security import check_bind_allowed, configure_curve_server
from controller.sessions import Refused, Session, SessionTable
from controller.translog import TransitionLog

log = logging.getLogger("controller.daemon")

DRAIN_ROUND = 64  #: messages read per round before the waiting cars are served
PER_CLIENT_DRAIN = 8  #: messages of one client decoded per round; older ones are dropped
FLOOD_ROUND = 2  #: messages read per round while a client floods: ZeroMQ reads the peers'
#: queues in turn, so a waiting car's request is one of the two (one flooder)
FLOOD_PAUSE_S = 0.00025  #: pause between rounds while a client floods: its pipe fills and
#: ZeroMQ's back-pressure stalls the flooder, where reading at full speed would let it (and
#: us) take whole cores from the planner; a car's request waits at most this long more.
#: bench/loop.py's flood rows measured 8/2 ms at +3.2-4.2 ms of car p99, 2/0.25 ms at +0.1-1.2.
MAX_FLOODERS = 64  #: identities remembered as flooding (the most recent ones)
POLL_MS = 50
RECEIVE_QUEUE = 100  #: messages ZeroMQ queues per peer (its default is 1000)
RECEIVE_BUFFER = 64 << 10  #: kernel receive buffer per connection [bytes]
LATENCY_WINDOW = 10_000
MAX_DEFERRED_RECORDS = 25  #: step records held back while requests keep arriving (0.5 s at 50 Hz)
ADMISSION_WINDOW = 50  #: recent solves whose median decides whether one more car fits
ADMIN_REQUESTS = ("reload",)  #: refused off the admin endpoint when there is one


class _ErrorEvent(NamedTuple):
    session: Session | None
    message: str
    seq: int | None


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    requests: int = 0
    steps: int = 0
    status: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    deadline_misses: int = 0
    reloads: int = 0
    reload_failures: int = 0
    flood_dropped: int = 0  #: messages answered stale without being decoded
    sessions_opened: int = 0
    repeated_replies: int = 0  #: retries of a served step, answered from its reply
    solve_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    handle_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def as_dict(self, model: str) -> dict[str, Any]:
        def pct(values: deque, q: float) -> float:
            return float(np.percentile(np.fromiter(values, float), q)) if values else 0.0

        return {
            "uptime_s": time.time() - self.started,
            "requests": self.requests,
            "steps": self.steps,
            "ok": self.status["ok"],
            "fallbacks": self.status["fallback"],
            "stops": self.status["stop"],
            "recoveries": self.status["recovery"],  # loss of control detected (controller.recovery)
            "errors": sum(self.errors.values()),
            "errors_by_code": dict(self.errors),
            "flood_dropped": self.flood_dropped,
            "deadline_misses": self.deadline_misses,
            "solve_ms_p50": pct(self.solve_ms, 50),
            "solve_ms_p99": pct(self.solve_ms, 99),
            "handle_ms_p50": pct(self.handle_ms, 50),
            "handle_ms_p99": pct(self.handle_ms, 99),
            "handle_ms_max": max(self.handle_ms, default=0.0),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "sessions_opened": self.sessions_opened,
            "repeated_replies": self.repeated_replies,
            "model": model,
        }


class Daemon:
    def __init__(self, runtime: Runtime, transition_log: TransitionLog | None = None):
        self.runtime = runtime
        self.config: DaemonConfig = runtime.config
        self.core: ControlCore = runtime.core
        self.model: LoadedModel = runtime.model
        self.log = transition_log
        self.stats = Stats()
        self.sessions = SessionTable(self.config.max_sessions, self.config.session_idle_s, self.core.new_car)
        self._warnings = RateLimitedLog(log, logging.WARNING, interval_s=5.0)
        # A client sending malformed bodies in a loop must not grow the log by a record per reply.
        self._error_events: RateLimiter[_ErrorEvent] = RateLimiter(self._write_error_event, interval_s=5.0)
        self._stop = threading.Event()
        self._pending_reload: tuple[LoadedModel, Any, Any] | None = None
        self._reload_thread: threading.Thread | None = None
        self._reload_lock = threading.Lock()
        self._recent_states: deque = deque(maxlen=64)
        self._watched_bundle: Path | None = runtime.model.source
        self._last_watch = 0.0
        # Work deferred until no request waits: step log records, then the planner's prepare().
        self._deferred_records: list[tuple[Session, int, wire.Step, StepOutcome, float, float]] = []
        self._prepare_due = False
        self._flooding = False  #: the last round was a flood: read less, pause between rounds
        self._flooders: dict[bytes, float] = {}  #: identities caught flooding, when last seen at it
        self._decode = wire.Decoder(self.config.limits)
        self.context = zmq.Context.instance()
        self.socket = self._router()
        # A car whose client reconnects (a new socket after a timeout) keeps its identity and
        # so its session: the new connection takes the identity over from the dead one.
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        check_bind_allowed(self.config.bind, self.config.security)
        self.auth = configure_curve_server(self.socket, self.context, self.config.security)
        self.socket.bind(self.config.bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.admin: zmq.Socket | None = None
        if self.config.admin_bind:
            self.admin = self._bind_admin(self.config.admin_bind)

    def _router(self) -> zmq.Socket:
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # Bodies over the cap get a too_large reply; ZeroMQ drops the connection of a peer
        # whose frame exceeds the hard limit, before it is ever held in memory whole.
        socket.setsockopt(zmq.MAXMSGSIZE, max(16 * self.config.limits.max_message_bytes, 1 << 20))
        # Small queues per peer: a car has one request in flight, and a flooder whose queue
        # and kernel buffer fill is stalled by back-pressure instead of running at full speed
        # into buffers that hold tens of thousands of requests.
        socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        socket.setsockopt(zmq.RCVBUF, RECEIVE_BUFFER)
        return socket

    def _bind_admin(self, endpoint: str) -> zmq.Socket:
        """The admin endpoint: an ipc socket file only this user may connect to (mode 0600,
        in a directory the process creates 0700 if it is missing)."""
        path = Path(endpoint.removeprefix("ipc://"))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        socket = self._router()
        old_umask = os.umask(0o177)  # the socket file is created 0600, with no window open
        try:
            socket.bind(endpoint)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        return socket

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def serve(self) -> None:
        log.info(
            "serving %s (planner %s, model %s, max_sessions %d)",
            self.endpoint, self.core.planner.name, self.model.version, self.config.max_sessions,
        )
        self._event("start", model=self.model.version, endpoint=self.endpoint, max_sessions=self.config.max_sessions)
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        if self.admin is not None:
            poller.register(self.admin, zmq.POLLIN)
        gc.collect()
        gc.freeze()  # warm-up is done: what exists now is never scanned by a collection again
        try:
            while not self._stop.is_set():
                self._swap_reloaded_model()
                self._maybe_watch()
                if self._prepare_due or self._deferred_records:
                    if not self._readable():
                        self._deferred_work()
                    elif len(self._deferred_records) >= MAX_DEFERRED_RECORDS:
                        self._flush_records()  # a client that never pauses: log anyway
                self._warnings.flush()
                self._error_events.flush()
                if self._flooding:
                    time.sleep(FLOOD_PAUSE_S)
                ready = dict(poller.poll(POLL_MS))
                if self.socket in ready:
                    self._serve_round()
                if self.admin is not None and self.admin in ready:
                    self._serve_admin()
        finally:
            self.close()

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.admin is not None:
            self.admin.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self._flush_records()
        self._warnings.flush(force=True)
        self._error_events.flush(force=True)
        if self.log:
            self.log.event("stop", stats=self.stats_dict())
            self.log.close()
        log.info("stopped")

    def _readable(self) -> bool:
        """A message is waiting (no system call: ZeroMQ's own event flags)."""
        return bool(self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def _deferred_work(self) -> None:
        self._flush_records()
        if self._prepare_due:
            self._prepare_due = False
            self.core.after_reply()

    def _event(self, kind: str, session: Session | None = None, **detail: Any) -> None:
        """Log an event after the step records that precede it."""
        if self.log:
            self._flush_records()
            if session is None:
                self.log.event(kind, **detail)
            else:
                self.log.event(kind, episode=session.episode, session=session.id, **detail)

    # -- one wake-up ------------------------------------------------------------------------------
    def _serve_round(self) -> None:
        """Read one round, serve the session holders first, bound each client's share."""
        rounds: dict[bytes, list[list[bytes]]] = {}
        recv = self.socket.recv_multipart
        count, limit = 0, FLOOD_ROUND if self._flooding else DRAIN_ROUND
        while count < limit and self._readable():
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            count += 1
            rounds.setdefault(frames[0], []).append(frames)
        received = time.time()
        self.stats.requests += count
        # Session holders first, the one served longest ago first; then everyone else.
        held = sorted((i for i in rounds if self.sessions.get(i) is not None), key=lambda i: self.sessions.get(i).last_served)
        stepped = dropped = False
        for identity in held + [i for i in rounds if self.sessions.get(i) is None]:
            messages = rounds[identity]
            if self._flooding and identity in self._flooders and identity not in held:
                # Still at it: shed without decoding or replying (a busy reply per message
                # would cost this thread and ZeroMQ's for a peer that reads none of them).
                self._drop_flood(messages)
                self._flooders[identity] = received
                dropped = True
                continue
            if len(messages) > PER_CLIENT_DRAIN:
                self._drop_flood(messages[:-PER_CLIENT_DRAIN])
                messages = messages[-PER_CLIENT_DRAIN:]
                self._flag_flooder(identity, received)
                dropped = True
            stepped |= self._serve_client(messages, received, admin=False)
        # A flood: one client over its share, or full rounds of nobody's car.
        self._flooding = dropped or (count == limit and not held)
        if stepped:
            self._prepare_due = True  # after the reply, once nothing is waiting
        if self._prepare_due and not held:
            # Only other clients' traffic is waiting: the car's next plan needs its noise.
            self._prepare_due = False
            self.core.after_reply()

    def _serve_admin(self) -> None:
        assert self.admin is not None
        for _ in range(DRAIN_ROUND):
            try:
                frames = self.admin.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.stats.requests += 1
            self._serve_client([frames], time.time(), admin=True)

    def _flag_flooder(self, identity: bytes, now: float) -> None:
        self._flooders[identity] = now
        if len(self._flooders) > MAX_FLOODERS:  # forget the ones that stopped longest ago
            for old in sorted(self._flooders, key=self._flooders.__getitem__)[: len(self._flooders) - MAX_FLOODERS]:
                del self._flooders[old]

    def _drop_flood(self, messages: list[list[bytes]]) -> None:
        # Shed the load: no decoding and no reply (a client that sends this many requests
        # without waiting reads none of them; each reply would cost the I/O thread again).
        self.stats.flood_dropped += len(messages)
        self._warnings.note("flood", f"{len(messages)} messages from one client dropped undecoded, unanswered")

    def _serve_client(self, messages: list[list[bytes]], received: float, admin: bool) -> bool:
        """One client's messages of this round, in order; True if a step was planned."""
        socket = self.admin if admin else self.socket
        assert socket is not None
        newest: tuple[list[bytes], wire.Step, float] | None = None
        for frames in messages:
            if len(frames) < 2:
                continue  # no routing envelope: nothing can be replied
            envelope, body = frames[:-1], frames[-1]
            started = time.perf_counter()
            try:
                request = self._decode(body)
            except ProtocolError as e:
                self._error(socket, envelope, e.code, e.message, e.seq)
                continue
            if isinstance(request, wire.Step) and admin:
                self._error(socket, envelope, ErrorCode.FORBIDDEN, "the admin endpoint drives no car", request.seq)
            elif isinstance(request, wire.Step):
                if newest is not None and (newest[1].seq, newest[1].stamp) != (request.seq, request.stamp):
                    self._error(socket, newest[0], ErrorCode.STALE, "superseded by a newer step request", newest[1].seq)
                # (copies of one step, resent while the daemon was away, get one reply)
                newest = (envelope, request, started)
            else:
                self._control(socket, envelope, request, received, admin)
        if newest is None:
            return False
        return self._step(socket, *newest, received)

    def _send_raw(self, socket: zmq.Socket, envelope: list[bytes], body: bytes) -> None:
        try:
            socket.send_multipart([*envelope, body], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the peer went away; nothing to do
            log.debug("reply not sent: %s", e)

    def _send(self, socket: zmq.Socket, envelope: list[bytes], reply: dict[str, Any]) -> None:
        self._send_raw(socket, envelope, wire.encode(reply))

    def _error(
        self, socket: zmq.Socket, envelope: list[bytes], code: ErrorCode, message: str, seq: int | None,
        session: Session | None = None,
    ) -> None:
        self._send(socket, envelope, wire.error_reply(code, message, seq))
        self.stats.errors[code.value] += 1
        self._warnings.note(f"error reply {code.value}", f"seq {seq}: {message}")
        if code not in (ErrorCode.STALE, ErrorCode.BUSY):
            self._error_events.note(code.value, _ErrorEvent(session, message, seq))

    def _write_error_event(self, r: Report[_ErrorEvent]) -> None:
        e = r.detail
        self._event("error", e.session, code=r.kind, message=e.message, seq=e.seq, count=r.count, total=r.total)

    # -- sessions --------------------------------------------------------------------------------
    def _session_for(self, socket: zmq.Socket, envelope: list[bytes], seq: int | None, received: float) -> Session | None:
        """The sender's session, opened if it has none and there is room; else a busy reply."""
        identity = envelope[0]
        session = self.sessions.get(identity)
        if session is not None:
            session.last_seen = received
            return session
        try:
            session, closed = self.sessions.open(identity, received, fits=self._one_more_car_fits())
        except Refused as e:
            self._error(socket, envelope, ErrorCode.BUSY, str(e), seq)
            return None
        for old in closed:
            log.info("session %s closed after %.1f s idle", old.id, received - old.last_seen)
            self._event("session_close", old, reason="idle", steps=old.steps)
        self.stats.sessions_opened += 1
        log.info("session %s opened (%d of %d)", session.id, len(self.sessions), self.sessions.max_sessions)
        self._event("session_open", session, identity=identity.hex())
        return session

    def _one_more_car_fits(self) -> bool:
        """Whether the recent solves leave room for one more car in the shared budget."""
        held = len(self.sessions)
        if held == 0 or not self.stats.solve_ms:
            return True
        recent = list(self.stats.solve_ms)[-ADMISSION_WINDOW:]
        return float(np.median(recent)) * 1e-3 * (held + 1) <= self.config.solve_budget_s

    def budget_s(self) -> float:
        """Each car's share of the solve budget: the cars held step in the same period."""
        return self.config.solve_budget_s / max(1, len(self.sessions))

    # -- steps ---------------------------------------------------------------------------------
    def _step(self, socket: zmq.Socket, envelope: list[bytes], request: wire.Step, started: float, received: float) -> bool:
        session = self._session_for(socket, envelope, request.seq, received)
        if session is None:
            return False
        try:
            result = control_step(
                self.core, session, request, received, self.model.version, self.config.stale_after_s, self.budget_s()
            )
        except Exception as e:  # the core guards the planner; this is a bug, not a crash
            log.exception("control step failed")
            self._error(socket, envelope, ErrorCode.INTERNAL, f"control step failed: {type(e).__name__}", request.seq, session)
            return False
        self._send(socket, envelope, result.reply)
        session.last_served = time.perf_counter()
        if result.repeated:
            self.stats.repeated_replies += 1
            return False
        if result.outcome is None:
            assert result.code is not None
            self.stats.errors[result.code.value] += 1
            self._warnings.note(f"error reply {result.code.value}", f"session {session.id} seq {request.seq}: {result.reply['message']}")
            return False
        replied = time.time()
        self._account(result, (time.perf_counter() - started) * 1e3)
        self._recent_states.append(request.state)
        # The record is built and queued once no request waits (_deferred_work).
        self._deferred_records.append((session, session.episode, request, result.outcome, received, replied))
        return True

    def _account(self, result: StepResult, handle_ms: float) -> None:
        outcome = result.outcome
        assert outcome is not None
        self.stats.steps += 1
        self.stats.status[outcome.status] += 1
        self.stats.status["recovery"] += outcome.recovery_started
        self.stats.solve_ms.append(outcome.solve_ms)
        self.stats.handle_ms.append(handle_ms)
        if outcome.deadline_missed:
            self.stats.deadline_misses += 1

    def _flush_records(self) -> None:
        """Queue the deferred step records (and their warnings), in order."""
        records, self._deferred_records = self._deferred_records, []
        planner = self.core.planner.name
        for session, episode, request, outcome, received, replied in records:
            if outcome.status != "ok":
                self._warnings.note(f"step {outcome.status}", f"session {session.id}: {outcome.reason}")
            if self.log:
                self.log.step(step_record(session.id, episode, request, outcome, received, replied, planner, self.model.version), outcome.plan)

    # -- control requests -------------------------------------------------------------------------
    def stats_dict(self, asker: Session | None = None) -> dict[str, Any]:
        now = time.time()
        out = self.stats.as_dict(self.model.version)
        out["max_sessions"] = self.sessions.max_sessions
        out["sessions"] = [
            {"id": s.id, "episode": s.episode, "steps": s.steps, "idle_s": now - s.last_seen} for s in self.sessions
        ]
        out["session"] = None if asker is None else asker.id
        out["episode"] = None if asker is None else asker.episode
        out["log"] = self.log.health() if self.log else {"enabled": False}
        return out

    def _control(self, socket: zmq.Socket, envelope: list[bytes], request: wire.Request, received: float, admin: bool) -> None:
        own = self.sessions.get(envelope[0])
        if own is not None:
            own.last_seen = received
        if request.type == "ping":
            self._send(socket, envelope, wire.pong_reply(request.seq, self.model.version))
        elif request.type == "stats":
            self._send(socket, envelope, wire.stats_reply(request.seq, self.stats_dict(own)))
        elif request.type == "reset":
            self._reset(socket, envelope, request, received, admin)
        elif request.type == "bye":
            closed = self.sessions.close(envelope[0])
            if closed is not None:
                log.info("session %s closed by its car (bye)", closed.id)
                self._event("session_close", closed, reason="bye", steps=closed.steps)
            self._send(socket, envelope, wire.ack_reply(request.seq, "bye", session=None if closed is None else closed.id))
        elif request.type == "reload":
            self._reload(socket, envelope, request, admin)

    def _reset(self, socket: zmq.Socket, envelope: list[bytes], request: wire.Request, received: float, admin: bool) -> None:
        """Reset the sender's session (opening it: a reset says a car is about to drive), or,
        on the admin endpoint, the session it names."""
        named = request.body.get("session")
        if named is not None and not isinstance(named, str):
            self._error(socket, envelope, ErrorCode.WRONG_TYPE, "session must be a string", request.seq)
            return
        own = self.sessions.get(envelope[0])
        if named is not None and (own is None or named != own.id):
            if not admin:
                self._error(socket, envelope, ErrorCode.FORBIDDEN, "resetting another session needs the admin endpoint", request.seq)
                return
            target = self.sessions.by_id(named)
            if target is None:
                self._error(socket, envelope, ErrorCode.UNKNOWN_SESSION, f"no session {named!r}", request.seq)
                return
        elif admin and named is None:
            self._error(socket, envelope, ErrorCode.MISSING_FIELD, "missing field 'session' (the admin endpoint drives no car)", request.seq)
            return
        else:
            target = self._session_for(socket, envelope, request.seq, received)
            if target is None:
                return
        episode = target.new_episode()
        self._send(socket, envelope, wire.ack_reply(request.seq, "reset", episode=episode, session=target.id))
        self._event("reset", target)

    def _reload(self, socket: zmq.Socket, envelope: list[bytes], request: wire.Request, admin: bool) -> None:
        path = request.body.get("path")
        if path is not None and not isinstance(path, str):
            self._error(socket, envelope, ErrorCode.WRONG_TYPE, "path must be a string", request.seq)
            return
        if self.admin is not None and not admin:
            self._error(socket, envelope, ErrorCode.FORBIDDEN, "reload is only taken on the admin endpoint", request.seq)
            return
        refusal = self.reload_refusal(path)
        if refusal is not None:
            self._error(socket, envelope, ErrorCode.FORBIDDEN, refusal, request.seq)
            return
        if self.start_reload(path):
            self._send(socket, envelope, wire.ack_reply(request.seq, "reload", model=self.model.version))
        else:
            self._error(socket, envelope, ErrorCode.RELOAD_FAILED, "a reload is already in progress", request.seq)

    def reload_refusal(self, path: str | None) -> str | None:
        """Why a reload of ``path`` is refused: only bundles under model.model_dir are taken
        (symbolic links resolved first); None (the configured source) always is."""
        if path is None:
            return None
        model_dir = self.config.model.model_dir
        if not model_dir:
            return "reload of a path needs model.model_dir; only bundles under it are taken"
        root = Path(model_dir).resolve()
        target = Path(path).resolve()
        if target == root or not target.is_relative_to(root):
            return f"{path} is not under the model directory {model_dir}"
        return None

    # -- model reload (worker thread) -------------------------------------------------------------
    def start_reload(self, path: str | None = None) -> bool:
        """Prepare a new model off the control path; False if one is being prepared."""
        with self._reload_lock:
            if self._reload_thread is not None and self._reload_thread.is_alive():
                return False
            self._reload_thread = threading.Thread(
                target=self._prepare_reload, args=(path,), name="model-reload", daemon=True
            )
            self._reload_thread.start()
            return True

    def _prepare_reload(self, path: str | None) -> None:
        try:
            recent = np.array(self._recent_states) if self._recent_states else None
            built = assemble(self.config, self.runtime.track, path, recent_states=recent)
            with self._reload_lock:
                self._pending_reload = (built.model, built.planner, built.delay)
        except Exception as e:
            self.stats.reload_failures += 1
            log.error("reload failed, keeping model %s: %s", self.model.version, e)
            if self.log:  # from the worker thread: the queue is thread-safe; order vs steps is loose
                self.log.event("reload_failed", error=str(e), kept=self.model.version)

    def _swap_reloaded_model(self) -> None:
        with self._reload_lock:
            pending, self._pending_reload = self._pending_reload, None
        if pending is None:
            return
        model, planner, delay = pending
        previous = self.model.version
        self.core.replace_planner(planner, delay)  # each session's car adopts it at its next step
        self.model = model
        self.stats.reloads += 1
        dead_time = 0.0 if delay is None else delay.steps * delay.control_period
        log.info("model %s -> %s (dead time compensated %.3f s)", previous, model.version, dead_time)
        self._event("reload", model=model.version, previous=previous, dead_time_s=dead_time)
        gc.freeze()  # the new planner's objects too

    def _maybe_watch(self) -> None:
        if not (self.config.model.watch and self.config.model.model_dir):
            return
        now = time.monotonic()
        if now - self._last_watch < 1.0:
            return
        self._last_watch = now
        newest = newest_bundle(self.config.model.model_dir)
        if newest is not None and newest != self._watched_bundle:
            self._watched_bundle = newest
            self.start_reload(str(newest))
