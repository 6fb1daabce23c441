"""The controller daemon: a thin ZeroMQ shell around ``ControlCore`` (docs/protocol.md).

One thread serves the socket. Each wake-up drains every queued message first, so that of
several step requests from one client only the newest is planned for (the older get a
``stale`` error): a backlog never yields old actions. Control requests (ping, reset, stats,
reload) are answered in order. Model reloads are prepared on a worker thread and swapped in
between steps; a model that fails its checks is never swapped in (the old one stays).

The critical path is receive, decode, ``ControlCore.step``, reply. Work that can wait (the
step's log record, warnings, the planner's ``prepare()``: noise for the next call) is done
after the reply, and only once no request is waiting: a request that arrives first is served
first and the deferred work runs after it. Log records are still queued in order (before any
event that follows them). The start-up heap is frozen out of the garbage collector's view
(``gc.freeze``) once warm-up is done, so a collection never walks torch's import-time objects.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from controller import protocol as wire
from controller.config import DaemonConfig
from controller.core import ControlCore, StepOutcome
from controller.protocol import ErrorCode, ProtocolError
from controller.runtime import LoadedModel, Runtime, assemble, newest_bundle
from controller.security import check_bind_allowed, configure_curve_server
from controller.translog import TransitionLog

log = logging.getLogger("controller.daemon")

MAX_DRAIN = 1000
POLL_MS = 50
LATENCY_WINDOW = 10_000
MAX_DEFERRED_RECORDS = 25  #: step records held back while requests keep arriving (0.5 s at 50 Hz)


@dataclass
class _Client:
    last_stamp: float | None = None
    last_received: float | None = None


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
    solve_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    handle_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def as_dict(self, model: str, episode: int) -> dict[str, Any]:
        def pct(values: deque, q: float) -> float:
            return float(np.percentile(np.fromiter(values, float), q)) if values else 0.0

        return {
            "uptime_s": time.time() - self.started,
            "requests": self.requests,
            "steps": self.steps,
            "ok": self.status["ok"],
            "fallbacks": self.status["fallback"],
            "stops": self.status["stop"],
            "errors": sum(self.errors.values()),
            "errors_by_code": dict(self.errors),
            "deadline_misses": self.deadline_misses,
            "solve_ms_p50": pct(self.solve_ms, 50),
            "solve_ms_p99": pct(self.solve_ms, 99),
            "handle_ms_p50": pct(self.handle_ms, 50),
            "handle_ms_p99": pct(self.handle_ms, 99),
            "handle_ms_max": max(self.handle_ms, default=0.0),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "model": model,
            "episode": episode,
        }


class Daemon:
    def __init__(self, runtime: Runtime, transition_log: TransitionLog | None = None):
        self.runtime = runtime
        self.config: DaemonConfig = runtime.config
        self.core: ControlCore = runtime.core
        self.model: LoadedModel = runtime.model
        self.log = transition_log
        self.stats = Stats()
        self.episode = 0
        self.clients: dict[bytes, _Client] = {}
        self._stop = threading.Event()
        self._pending_reload: tuple[LoadedModel, Any] | None = None
        self._reload_thread: threading.Thread | None = None
        self._reload_lock = threading.Lock()
        self._recent_states: deque = deque(maxlen=64)
        self._watched_bundle: Path | None = runtime.model.source
        self._last_watch = 0.0
        # Work deferred until no request waits: step log records, then the planner's prepare().
        self._deferred_records: list[tuple[int, wire.Step, StepOutcome, float, float]] = []
        self._prepare_due = False
        self._decode = wire.Decoder(self.config.limits)
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # Bodies over the cap get a too_large reply; ZeroMQ drops the connection of a peer
        # whose frame exceeds the hard limit, before it is ever held in memory whole.
        self.socket.setsockopt(zmq.MAXMSGSIZE, max(16 * self.config.limits.max_message_bytes, 1 << 20))
        check_bind_allowed(self.config.bind, self.config.security)
        self.auth = configure_curve_server(self.socket, self.context, self.config.security)
        self.socket.bind(self.config.bind)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)

    def serve(self) -> None:
        log.info("serving %s (planner %s, model %s)", self.endpoint, self.core.planner.name, self.model.version)
        self._event("start", model=self.model.version, endpoint=self.endpoint)
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
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
                if poller.poll(POLL_MS):
                    self._serve_batch()
        finally:
            self.close()

    def close(self) -> None:
        self.socket.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
        self._flush_records()
        if self.log:
            self.log.event("stop", episode=self.episode, stats=self.stats.as_dict(self.model.version, self.episode))
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

    def _event(self, kind: str, **detail: Any) -> None:
        """Log an event after the step records that precede it."""
        if self.log:
            self._flush_records()
            self.log.event(kind, episode=self.episode, **detail)

    # -- one wake-up ------------------------------------------------------------------------------
    def _serve_batch(self) -> None:
        frames_list = []
        recv = self.socket.recv_multipart
        while len(frames_list) < MAX_DRAIN and self._readable():
            try:
                frames_list.append(recv(zmq.NOBLOCK))
            except zmq.Again:
                break
        received = time.time()
        newest: dict[bytes, tuple[list[bytes], wire.Step, float]] = {}
        for frames in frames_list:
            self.stats.requests += 1
            if len(frames) < 2:
                continue  # no routing envelope: nothing can be replied
            envelope, body = frames[:-1], frames[-1]
            started = time.perf_counter()
            try:
                request = self._decode(body)
            except ProtocolError as e:
                self._error(envelope, e.code, e.message, e.seq)
                continue
            if isinstance(request, wire.Step):
                older = newest.get(envelope[0])
                if older is not None:
                    self._error(older[0], ErrorCode.STALE, "superseded by a newer step request", older[1].seq)
                newest[envelope[0]] = (envelope, request, started)
            else:
                self._control(envelope, request)
        for envelope, request, started in newest.values():
            self._step(envelope, request, received, started)
        if newest:
            self._prepare_due = True  # after the reply, once nothing is waiting

    def _send(self, envelope: list[bytes], reply: dict[str, Any]) -> None:
        try:
            self.socket.send_multipart([*envelope, wire.encode(reply)], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the peer went away; nothing to do
            log.debug("reply not sent: %s", e)

    def _error(self, envelope: list[bytes], code: ErrorCode, message: str, seq: int | None) -> None:
        self._send(envelope, wire.error_reply(code, message, seq))
        self.stats.errors[code.value] += 1
        log.warning("error reply %s (seq %s): %s", code.value, seq, message)
        if code is not ErrorCode.STALE:
            self._event("error", code=code.value, message=message, seq=seq)

    # -- steps ---------------------------------------------------------------------------------
    def _step(self, envelope: list[bytes], request: wire.Step, received: float, started: float) -> None:
        client = self.clients.setdefault(envelope[0], _Client())
        previous_stamp, previous_received = client.last_stamp, client.last_received
        client.last_received = received
        if previous_stamp is not None and request.stamp <= previous_stamp:
            self._error(
                envelope,
                ErrorCode.STALE,
                f"stamp {request.stamp} is not after the previous step's {previous_stamp}",
                request.seq,
            )
            return
        if previous_stamp is not None and previous_received is not None:
            # The sender's clock and ours advance alike unless the request sat in a queue on
            # the way: more than stale_after_s of extra delay since the last step is stale.
            delayed = (received - previous_received) - (request.stamp - previous_stamp)
            if delayed > self.config.stale_after_s:
                self._error(envelope, ErrorCode.STALE, f"arrived {delayed:.3f} s later than its stamp implies", request.seq)
                client.last_stamp = request.stamp
                return
        client.last_stamp = request.stamp
        state = request.state
        try:
            outcome = self.core.step(state, request.stamp)
        except Exception as e:  # the core guards the planner; this is a bug, not a crash
            log.exception("control step failed")
            self._error(envelope, ErrorCode.INTERNAL, f"control step failed: {type(e).__name__}", request.seq)
            return
        plan = outcome.plan.tolist() if (request.want_plan and outcome.plan is not None) else None
        reply = wire.action_reply(
            request.seq,  # type: ignore[arg-type]
            outcome.status,
            outcome.action[0],
            outcome.action[1],
            outcome.solve_ms,
            self.model.version,
            plan,
            outcome.cost,
        )
        self._send(envelope, reply)
        replied = time.time()
        handle_ms = (time.perf_counter() - started) * 1e3
        self._account(outcome, handle_ms)
        self._recent_states.append(state)
        # The record is built and queued once no request waits (_deferred_work).
        self._deferred_records.append((self.episode, request, outcome, received, replied))

    def _account(self, outcome: StepOutcome, handle_ms: float) -> None:
        self.stats.steps += 1
        self.stats.status[outcome.status] += 1
        self.stats.solve_ms.append(outcome.solve_ms)
        self.stats.handle_ms.append(handle_ms)
        if outcome.deadline_missed:
            self.stats.deadline_misses += 1

    def _flush_records(self) -> None:
        """Queue the deferred step records (and their warnings), in order."""
        records, self._deferred_records = self._deferred_records, []
        for episode, request, outcome, received, replied in records:
            if outcome.status != "ok":
                log.warning("%s: %s", outcome.status, outcome.reason)
            if self.log:
                self.log.step(self._record(episode, request, outcome, received, replied))

    def _record(
        self, episode: int, request: wire.Step, outcome: StepOutcome, received: float, replied: float
    ) -> dict[str, Any]:
        return {
            "episode": episode,
            "seq": request.seq,
            "stamp": request.stamp,
            "received": received,
            "replied": replied,
            "state": request.state_fields(),
            "action": {"steer_rate": outcome.action[0], "accel": outcome.action[1]},
            "status": outcome.status,
            "solve_ms": outcome.solve_ms,
            "deadline_missed": outcome.deadline_missed,
            "cost": outcome.cost,
            "cost_terms": outcome.cost_terms,
            "planner": self.core.planner.name,
            "model": self.model.version,
        }

    # -- control requests -------------------------------------------------------------------------
    def _control(self, envelope: list[bytes], request: wire.Request) -> None:
        if request.type == "ping":
            self._send(envelope, wire.pong_reply(request.seq, self.model.version))
        elif request.type == "reset":
            self.episode += 1
            self.core.reset()
            self.clients.pop(envelope[0], None)
            self._send(envelope, wire.ack_reply(request.seq, "reset", episode=self.episode))
            self._event("reset")
        elif request.type == "stats":
            self._send(envelope, wire.stats_reply(request.seq, self.stats.as_dict(self.model.version, self.episode)))
        elif request.type == "reload":
            path = request.body.get("path")
            if path is not None and not isinstance(path, str):
                self._error(envelope, ErrorCode.WRONG_TYPE, "path must be a string", request.seq)
                return
            started = self.start_reload(path)
            if started:
                self._send(envelope, wire.ack_reply(request.seq, "reload", model=self.model.version))
            else:
                self._error(envelope, ErrorCode.RELOAD_FAILED, "a reload is already in progress", request.seq)

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
                self.log.event("reload_failed", episode=self.episode, error=str(e), kept=self.model.version)

    def _swap_reloaded_model(self) -> None:
        with self._reload_lock:
            pending, self._pending_reload = self._pending_reload, None
        if pending is None:
            return
        model, planner, delay = pending
        previous = self.model.version
        self.core.replace_planner(planner, delay)
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
