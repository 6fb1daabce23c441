"""Prometheus metrics of a running daemon (opt-in: ``python -m controller --metrics PORT``).

The metrics are read from the daemon's own ``Stats`` when Prometheus scrapes, on the HTTP
server's thread: the control loop does nothing for them, not even an increment. Counters are
the daemon's counters; the two histograms are built at scrape time from the latency windows
the daemon keeps anyway (its last 10 000 steps), taking the steps since the previous scrape.
A scrape interval longer than 10 000 control periods (200 s at 50 Hz) would miss steps in the
histograms (never in the counters). At the moment of a scrape a step being accounted can be
off by one in the histograms.

Metrics (all prefixed ``vehicle_mpc_``): ``requests_total``, ``steps_total``,
``steps_by_status_total{status}`` (ok, fallback, stop, recovery), ``fallbacks_total``,
``deadline_misses_total``, ``errors_total{code}``, ``reloads_total``, ``reload_failures_total``,
``solve_seconds`` and ``handle_seconds`` (histograms: time in the planner; receipt to reply,
the daemon's share of the round trip), ``uptime_seconds``, ``model_info{version}``, and the
process collector's ``process_*``.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

PREFIX = "vehicle_mpc"
#: Upper bounds [s]: a 50 ms control period, a solve budget of tens of ms, overheads of 0.1 ms.
BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.025, 0.05, 0.1)


class _Histogram:
    """Cumulative bucket counts and sum, fed with batches of milliseconds."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)  # the last one: beyond every bound (+Inf)
        self.total_s = 0.0

    def add_ms(self, values_ms: list[float]) -> None:
        for value in values_ms:
            seconds = value * 1e-3
            self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
            self.total_s += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(repr, BUCKETS_S), "+Inf"), self.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total_s)


class DaemonCollector(Collector):
    """Reads ``daemon.stats`` (and ``daemon.model``) at each scrape."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self._lock = threading.Lock()  # two scrapers at once must not take the same steps twice
        self._seen_steps = 0
        self._solve = _Histogram()
        self._handle = _Histogram()

    def _take_new_steps(self, stats: Any) -> None:
        solve, handle = list(stats.solve_ms), list(stats.handle_ms)  # copies, taken under the GIL
        steps = stats.steps
        new = max(0, steps - self._seen_steps)
        self._seen_steps = steps
        if new:
            self._solve.add_ms(solve[-min(new, len(solve)):])
            self._handle.add_ms(handle[-min(new, len(handle)):])

    def collect(self) -> Iterator[Any]:
        stats = self.daemon.stats
        with self._lock:
            self._take_new_steps(stats)
            yield self._solve.family(f"{PREFIX}_solve_seconds", "time in the planner per step")
            yield self._handle.family(
                f"{PREFIX}_handle_seconds", "receipt to reply per step: the daemon's share of the round trip"
            )

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)

        yield counter("requests", "messages received", stats.requests)
        yield counter("steps", "step requests planned for", stats.steps)
        by_status = CounterMetricFamily(f"{PREFIX}_steps_by_status", "steps by reply status", labels=["status"])
        for status, count in dict(stats.status).items():
            by_status.add_metric([str(status)], count)
        yield by_status
        yield counter("fallbacks", "steps answered with the fallback plan", stats.status.get("fallback", 0))
        yield counter("deadline_misses", "steps over the solve budget", stats.deadline_misses)
        errors = CounterMetricFamily(f"{PREFIX}_errors", "error replies by code", labels=["code"])
        for code, count in dict(stats.errors).items():
            errors.add_metric([str(code)], count)
        yield errors
        yield counter("reloads", "models swapped in", stats.reloads)
        yield counter("reload_failures", "reloads refused (the old model stayed)", stats.reload_failures)
        yield GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "since the daemon started", value=time.time() - stats.started)
        info = InfoMetricFamily(f"{PREFIX}_model", "the model in use")
        info.add_metric([], {"version": str(getattr(self.daemon.model, "version", ""))})
        yield info


def serve_metrics(daemon: Any, address: str) -> str:
    """Serve ``/metrics`` for ``daemon`` at ``address`` (``PORT`` or ``HOST:PORT``; the host
    defaults to 127.0.0.1, port 0 picks a free one); returns the URL."""
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DaemonCollector(daemon))
    ProcessCollector(registry=registry)
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    bound_host, bound_port = server.server_address[:2]
    return f"http://{bound_host}:{bound_port}/metrics"
