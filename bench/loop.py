"""Control-loop benchmark over real loopback ZeroMQ against a daemon subprocess.

1. Overhead: round trip of step requests minus the daemon's solve time (transport, decoding,
   validation, the control step around the planner, reply; logging happens after the reply),
   against a bare ZeroMQ ROUTER echo in its own process, measured in the same run with the same
   client and the same pacing, and under that the transport floor: the same body echoed over
   a plain TCP loopback socket (no ZeroMQ, whose I/O threads add a hand-off on each side).
   Two pacings: back to back (``--gap-ms`` between a reply and the next request, 1 ms by
   default) and paced at the control rate (a request every
   ``--period-ms``, 50 ms by default, idle in between: on these VMs a call after an idle gap
   can be slower). Also the daemon's own view from its transition log: receipt to reply,
   minus solve.
2. Real time: the simulator at 50 Hz for ``--seconds`` (60 by default), MPPI K=1024, H=40 on the
   semi-parametric model (a bundle with one 2x64 residual), paced by the wall clock: deadline
   misses (solve budget 0.6 x 20 ms), late replies, solve and round-trip p50/p99.

3. Flood: the simulator at 20 Hz in real time for ``--flood-seconds`` (MPPI K=1024, H=40,
   kinematic), once alone and once while another process floods the daemon with step
   requests over its own DEALER without reading a reply (any local process can). Late
   replies (round trip over the 50 ms period), timeouts, and the car's round-trip p50/p99 in
   both runs, with the difference; the target is zero late replies and a p99 within 2 ms of
   the run without the flood.

The simulator (this process) runs torch on one thread; ``--daemon-threads`` sets the daemon's.

    python bench/loop.py [--n 2000] [--n-paced 300] [--seconds 60] [--json out.json]
                         [--skip-realtime] [--skip-overhead] [--skip-flood] [--flood-seconds 20]
                         [--daemon-threads 1]
    python bench/loop.py --only-flood --flood-seconds 5     # the flood rows alone
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.translog import load_steps  # noqa: E402
from controller.track import load_track  # noqa: E402
from sim.__main__ import SIM_THREADS, free_port  # noqa: E402
from sim.closed_loop import start_state  # noqa: E402
from sim.episode import EpisodeConfig, run_episode  # noqa: E402
from sim.remote import ControllerClient  # noqa: E402
from vehicle_models.bundle import ModelBundle, save_bundle  # noqa: E402
from vehicle_models.params import load_params  # noqa: E402
from vehicle_models.residual import ResidualConfig, ResidualEnsemble  # noqa: E402
from vehicle_models.true_car import TrueCar  # noqa: E402
from vehicle_models.semi_parametric import DEFAULT_OUTPUT_FIELDS  # noqa: E402

STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}
OVERHEAD_DAEMON = ["planner.num_samples=64", "planner.horizon=10", "planner.compile=false"]

#: The baseline: a ROUTER in its own process, polled like the daemon's, echoing each body.
ECHO_SERVER = """
import sys, zmq
ctx = zmq.Context.instance()
router = ctx.socket(zmq.ROUTER)
router.setsockopt(zmq.LINGER, 0)
router.bind(sys.argv[1])
poller = zmq.Poller()
poller.register(router, zmq.POLLIN)
print("ready", flush=True)
while True:
    if poller.poll(50):
        router.send_multipart(router.recv_multipart(), zmq.NOBLOCK)
"""


def paced(n: int, gap_s: float = 0.0, period_s: float = 0.0) -> Iterator[int]:
    """0 .. n-1, each yielded once a request is due: ``period_s`` apart by the wall clock, or
    ``gap_s`` after the previous one was served."""
    next_at = time.perf_counter()
    for i in range(n):
        if period_s:
            next_at += period_s
            time.sleep(max(0.0, next_at - time.perf_counter()))
        yield i
        if gap_s:
            time.sleep(gap_s)


#: The transport floor under ZeroMQ: the same bodies echoed over a plain TCP loopback socket.
TCP_ECHO_SERVER = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
conn, _ = server.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(65536):
    conn.sendall(data)
"""


def tcp_round_trips(n: int, gap_s: float = 0.0, period_s: float = 0.0) -> np.ndarray:
    """(n,) round trips [ms] of a step body over a plain TCP socket (no ZeroMQ), paced like
    ``round_trips``."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", TCP_ECHO_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        body = msgpack.packb({"type": "step", "seq": 0, "stamp": 0.0, "state": STATE})
        out = np.empty(n)
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def echo() -> float:
                t0 = time.perf_counter()
                conn.sendall(body)
                got = 0
                while got < len(body):
                    got += len(conn.recv(65536))
                return (time.perf_counter() - t0) * 1e3

            for _ in range(3):  # connection warm
                echo()
            for i in paced(n, gap_s, period_s):
                out[i] = echo()
        return out
    finally:
        proc.kill()
        proc.wait(5)


def start_daemon(tmp: Path, overrides: list[str]) -> tuple[subprocess.Popen, str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    tmp.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "controller", "--bind", endpoint, "--log-dir", str(tmp / "logs")]
    args += [f"--set={o}" for o in overrides]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=open(tmp / "daemon.out", "a"), stderr=subprocess.STDOUT)
    with ControllerClient(endpoint) as c:
        c.wait_ready(600)
    return proc, endpoint


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def round_trips(endpoint: str, n: int, gap_s: float = 0.0, period_s: float = 0.0) -> np.ndarray:
    """(n,) round trip minus the reply's solve_ms [ms]; ``gap_s`` after each reply, or one
    request every ``period_s`` by the wall clock. One seq-matched step at a time."""
    out = np.empty(n)
    with ControllerClient(endpoint) as client:
        client.reset()
        for i in range(3):  # connection set up, first-call paths warm
            client.send({"type": "step", "seq": -1 - i, "stamp": -1.0 + 0.01 * i, "state": STATE})
            client.receive(-1 - i, 5.0)
        for i in paced(n, gap_s, period_s):
            t0 = time.perf_counter()
            client.send({"type": "step", "seq": i, "stamp": 0.05 * i, "state": STATE})
            reply = client.receive(i, 5.0)
            rtt = (time.perf_counter() - t0) * 1e3
            if reply is None:
                raise RuntimeError(f"no reply to step {i} within 5 s")
            out[i] = rtt - reply.get("solve_ms", 0.0)
    return out


def echo_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, endpoint], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, endpoint


def daemon_side_ms(log_dir: Path) -> np.ndarray:
    """Receipt to reply minus solve [ms], per step, from the daemon's transition log."""
    steps = load_steps(log_dir)
    keep = steps.seq >= 0  # not the warm-up steps
    return ((steps.replied - steps.received) * 1e3 - steps.solve_ms)[keep]


def overhead(tmp: Path, n: int, n_paced: int, gap_s: float, period_s: float, threads: int, priority: int = 0) -> dict[str, np.ndarray]:
    """Every series of the overhead table, measured in one run, one server after another."""
    tcp_b2b = tcp_round_trips(n, gap_s=gap_s)
    tcp_paced = tcp_round_trips(n_paced, period_s=period_s)
    echo, echo_ep = echo_server(tmp)
    try:
        base_b2b = round_trips(echo_ep, n, gap_s=gap_s)
        base_paced = round_trips(echo_ep, n_paced, period_s=period_s)
    finally:
        echo.kill()
        echo.wait(5)
    run = tmp / "overhead"
    proc, endpoint = start_daemon(run, OVERHEAD_DAEMON + [f"threads={threads}", f"realtime_priority={priority}"])
    try:
        b2b = round_trips(endpoint, n, gap_s=gap_s)
        paced = round_trips(endpoint, n_paced, period_s=period_s)
    finally:
        stop(proc)
    inside = daemon_side_ms(run / "logs")
    return {
        "tcp_back_to_back": tcp_b2b,
        "tcp_paced": tcp_paced,
        "echo_back_to_back": base_b2b,
        "echo_paced": base_paced,
        "daemon_back_to_back": b2b,
        "daemon_paced": paced,
        "daemon_side_back_to_back": inside[:n],
        "daemon_side_paced": inside[n:],
    }


def summarise(t: np.ndarray) -> dict[str, float]:
    return {"n": int(len(t)), "median": float(np.median(t)), "p99": float(np.percentile(t, 99)), "max": float(t.max())}


def print_overhead(series: dict[str, np.ndarray], gap_ms: float, period_ms: float) -> dict:
    rows = [
        ("plain TCP echo, no ZeroMQ, back to back", "tcp_back_to_back", "echo_back_to_back"),
        (f"bare ZeroMQ echo, back to back ({gap_ms:g} ms gap)", "echo_back_to_back", "echo_back_to_back"),
        ("daemon step minus solve, back to back", "daemon_back_to_back", "echo_back_to_back"),
        ("  daemon side: receipt to reply - solve", "daemon_side_back_to_back", "echo_back_to_back"),
        ("plain TCP echo, no ZeroMQ, paced", "tcp_paced", "echo_paced"),
        (f"bare ZeroMQ echo, paced ({period_ms:g} ms)", "echo_paced", "echo_paced"),
        ("daemon step minus solve, paced", "daemon_paced", "echo_paced"),
        ("  daemon side: receipt to reply - solve", "daemon_side_paced", "echo_paced"),
    ]
    print(f"{'round trip over loopback [ms]':<46} {'median':>8} {'p99':>8} {'max':>8} {'x echo med':>10} {'x echo p99':>10}")
    out = {}
    for label, key, base_key in rows:
        t, base = series[key], series[base_key]
        s = summarise(t)
        s["ratio_median"] = s["median"] / float(np.median(base))
        s["ratio_p99"] = s["p99"] / float(np.percentile(base, 99))
        out[key] = s
        print(f"{label:<46} {s['median']:>8.3f} {s['p99']:>8.3f} {s['max']:>8.3f} {s['ratio_median']:>10.2f} {s['ratio_p99']:>10.2f}")
    return out


def semi_bundle(path: Path) -> Path:
    residual = ResidualEnsemble(4, len(DEFAULT_OUTPUT_FIELDS), ResidualConfig(hidden=(64, 64), ensemble_size=1), seed=1)
    with torch.no_grad():
        residual.weights[-1].mul_(5)
    save_bundle(ModelBundle("bench-semi", load_params("passenger_car"), residual), path, overwrite=True)
    return path


def realtime(tmp: Path, seconds: float, threads: int, priority: int = 0) -> dict:
    bundle = semi_bundle(tmp / "bundle")
    proc, endpoint = start_daemon(
        tmp / "realtime",
        [f"model.bundle={bundle}", "control_period=0.02", "planner.num_samples=1024", "planner.horizon=40",
         "planner.dt=0.05", "track=random:0", f"threads={threads}",
         f"realtime_priority={priority}"],
    )
    try:
        track = load_track("random:0")
        x0 = np.zeros(7)
        x0[:5] = start_state(track, 8.0).numpy()
        with ControllerClient(endpoint) as client:
            client.reset()
            summary = run_episode(
                client, TrueCar.named("passenger_car"), track, x0,
                EpisodeConfig(control_period=0.02, realtime=True, laps=100, max_steps=int(seconds / 0.02),
                              reply_timeout_s=0.1, vehicle_width=1.674),
            )
            stats = client.stats()
    finally:
        stop(proc)
    return {"steps": stats["steps"], "deadline_misses": stats["deadline_misses"], "late_replies": summary.late_replies,
            "timeouts": summary.timeouts, "fallbacks": stats["fallbacks"],
            "solve_ms_p50": stats["solve_ms_p50"], "solve_ms_p99": stats["solve_ms_p99"],
            "round_trip_ms_p50": summary.round_trip_ms_p50, "round_trip_ms_p99": summary.round_trip_ms_p99,
            "handle_ms_p99": stats["handle_ms_p99"], "handle_ms_max": stats["handle_ms_max"],
            "mean_abs_lateral_m": summary.mean_abs_lateral_m, "offtrack_s": summary.offtrack_s}


#: Another local process: a DEALER sending step requests as fast as ZeroMQ takes them, never
#: reading a reply, until killed. Prints how many it sent when told to stop (SIGTERM).
FLOOD_CLIENT = """
import signal, sys, msgpack, zmq
ctx = zmq.Context.instance()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(sys.argv[1])
sent = 0
def done(*_):
    print(sent, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
print("ready", flush=True)
sys.stdin.readline()  # "go": the car holds its session by then
state = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}
while True:
    sock.send_multipart([b"", msgpack.packb({"type": "step", "seq": sent, "stamp": 1e-3 * sent, "state": state})])
    sent += 1
"""

FLOOD_DAEMON = ["control_period=0.05", "planner.num_samples=1024", "planner.horizon=40", "planner.dt=0.05", "track=random:0"]


def drive_20hz(endpoint: str, seconds: float, on_step=None) -> dict:
    """The car at 20 Hz by the wall clock for ``seconds``: late replies, timeouts, round trips."""
    track = load_track("random:0")
    x0 = np.zeros(7)
    x0[:5] = start_state(track, 8.0).numpy()
    with ControllerClient(endpoint) as client:
        summary = run_episode(
            client, TrueCar.named("passenger_car"), track, x0,
            EpisodeConfig(control_period=0.05, realtime=True, laps=100, max_steps=int(seconds / 0.05),
                          reply_timeout_s=0.1, vehicle_width=1.674),
            on_step=on_step,
        )
        stats = client.stats()
    return {"steps": summary.steps, "end": summary.end_reason, "late_replies": summary.late_replies, "timeouts": summary.timeouts,
            "round_trip_ms_p50": summary.round_trip_ms_p50, "round_trip_ms_p99": summary.round_trip_ms_p99,
            "deadline_misses": stats["deadline_misses"], "flood_dropped": stats["flood_dropped"],
            "handle_ms_p99": stats["handle_ms_p99"], "handle_ms_max": stats["handle_ms_max"],
            "errors_by_code": stats["errors_by_code"]}


def flood(tmp: Path, seconds: float, threads: int, overrides: list[str] = FLOOD_DAEMON) -> dict:
    """The 20 Hz drive alone, then with a concurrent flood, against one daemon."""
    proc, endpoint = start_daemon(tmp / "flood", [*overrides, f"threads={threads}"])
    try:
        alone = drive_20hz(endpoint, seconds)
        flooder = subprocess.Popen([sys.executable, "-c", FLOOD_CLIENT, endpoint], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert flooder.stdout is not None and flooder.stdout.readline().strip() == "ready"

            def start_flood(n: int, *_: object) -> None:
                if n == 0:  # the car holds its session (the daemon's one place) from its first step
                    assert flooder.stdin is not None
                    flooder.stdin.write("go\n")
                    flooder.stdin.flush()

            flooded = drive_20hz(endpoint, seconds, start_flood)
        finally:
            flooder.terminate()
            sent = flooder.stdout.read().strip() if flooder.stdout else ""
            flooder.wait(5)
        flooded["flood_sent"] = int(sent) if sent.isdigit() else -1
    finally:
        stop(proc)
    flooded["flood_dropped"] -= alone["flood_dropped"]
    return {"alone": alone, "flood": flooded,
            "p99_difference_ms": flooded["round_trip_ms_p99"] - alone["round_trip_ms_p99"]}


def print_flood(rows: dict, seconds: float) -> None:
    print(f"\nflood: the car at 20 Hz for {seconds:g} s, alone and while another process floods the daemon")
    print(f"{'run':<8} {'steps':>6} {'end':>10} {'late':>5} {'timeouts':>8} {'rtt p50':>8} {'rtt p99':>8} {'misses':>6} "
          f"{'handle p99':>10} {'flood sent':>10} {'dropped':>8}")
    for name in ("alone", "flood"):
        r = rows[name]
        print(f"{name:<8} {r['steps']:>6} {r['end']:>10} {r['late_replies']:>5} {r['timeouts']:>8} {r['round_trip_ms_p50']:>8.2f} "
              f"{r['round_trip_ms_p99']:>8.2f} {r['deadline_misses']:>6} {r['handle_ms_p99']:>10.2f} "
              f"{r.get('flood_sent', 0):>10} {r['flood_dropped']:>8}")
    print(f"car round-trip p99, flood - alone: {rows['p99_difference_ms']:+.2f} ms (target: within 2 ms, zero late replies)")


def live_view(tmp: Path, n: int, n_paced: int, gap_s: float, period_s: float) -> dict:
    """Round trip minus solve with the Foxglove live view off and on (a WebSocket viewer
    subscribed to every topic, draining on a thread), same daemon config, one after the other."""
    import contextlib
    import json as _json
    import threading

    from websockets.sync.client import connect

    out: dict = {}
    for label, live in (("off", False), ("on", True)):
        endpoint, port = f"tcp://127.0.0.1:{free_port()}", free_port()
        run = tmp / f"live-{label}"
        run.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "controller", "--bind", endpoint, "--log-dir", str(run / "logs"),
                *(["--foxglove", str(port)] if live else []), *(f"--set={o}" for o in OVERHEAD_DAEMON)]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=open(run / "daemon.out", "a"), stderr=subprocess.STDOUT)
        stop_viewer, received = threading.Event(), [0]
        viewer = None
        sockets = contextlib.ExitStack()
        try:
            with ControllerClient(endpoint) as c:
                c.wait_ready(600)
            if live:
                ws = sockets.enter_context(
                    connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]))
                channels = []
                while not channels:
                    frame = ws.recv(timeout=10)
                    if isinstance(frame, str) and _json.loads(frame).get("op") == "advertise":
                        channels = _json.loads(frame)["channels"]
                ws.send(_json.dumps({"op": "subscribe", "subscriptions": [
                    {"id": i, "channelId": ch["id"]} for i, ch in enumerate(channels)]}))

                def drain() -> None:
                    while not stop_viewer.is_set():
                        try:
                            ws.recv(timeout=0.2)
                            received[0] += 1
                        except TimeoutError:
                            continue
                        except Exception:
                            return

                viewer = threading.Thread(target=drain, daemon=True)
                viewer.start()
            b2b = round_trips(endpoint, n, gap_s=gap_s)
            paced_rt = round_trips(endpoint, n_paced, period_s=period_s)
        finally:
            stop_viewer.set()
            if viewer is not None:
                viewer.join(5)
            sockets.close()
            stop(proc)
        out[label] = {"back_to_back": b2b, "paced": paced_rt, "viewer_messages": received[0]}
    print(f"\nFoxglove live view, round trip minus solve [ms] ({n} back to back, {n_paced} paced at "
          f"{period_s * 1e3:g} ms; 'on': a viewer subscribed to every topic)")
    print(f"{'':<28} {'median':>8} {'p99':>8} {'x off med':>10} {'x off p99':>10}")
    rows: dict = {}
    for mode in ("back_to_back", "paced"):
        base = out["off"][mode]
        for label in ("off", "on"):
            s = summarise(out[label][mode])
            s["ratio_median"] = s["median"] / float(np.median(base))
            s["ratio_p99"] = s["p99"] / float(np.percentile(base, 99))
            rows[f"{label}_{mode}"] = s
            print(f"{'live view ' + label + ', ' + mode.replace('_', ' '):<28} {s['median']:>8.3f} {s['p99']:>8.3f} "
                  f"{s['ratio_median']:>10.2f} {s['ratio_p99']:>10.2f}")
    rows["viewer_messages"] = out["on"]["viewer_messages"]
    print(f"  the viewer received {rows['viewer_messages']} messages")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="back-to-back requests per server")
    p.add_argument("--n-paced", type=int, default=300, help="paced requests per server")
    p.add_argument("--gap-ms", type=float, default=1.0, help="back to back: pause after each reply [ms]")
    p.add_argument("--period-ms", type=float, default=50.0, help="paced: one request every ... [ms]")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the real-time run [s]")
    p.add_argument("--daemon-threads", type=int, default=2, help="the daemon's planner threads")
    p.add_argument("--realtime-priority", type=int, default=0,
                   help="the daemon's SCHED_FIFO priority (0: normal; needs root or CAP_SYS_NICE)")
    p.add_argument("--skip-realtime", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-flood", action="store_true")
    p.add_argument("--only-flood", action="store_true", help="the flood rows alone")
    p.add_argument("--flood-seconds", type=float, default=20.0, help="length of each flood run [s]")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--live-view", action="store_true",
                   help="also: the Foxglove live view off vs on (a viewer subscribed)")
    args = p.parse_args(argv)
    torch.set_num_threads(SIM_THREADS)
    results: dict = {"daemon_threads": args.daemon_threads, "realtime_priority": args.realtime_priority}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.only_flood:
            args.skip_overhead = args.skip_realtime = True
        if not args.skip_overhead:
            series = overhead(tmp, args.n, args.n_paced, args.gap_ms * 1e-3, args.period_ms * 1e-3,
                              args.daemon_threads, args.realtime_priority)
            results["overhead_ms"] = print_overhead(series, args.gap_ms, args.period_ms)
        if not args.skip_realtime:
            rt = realtime(tmp, args.seconds, args.daemon_threads, args.realtime_priority)
            results["realtime_50hz"] = rt
            print(f"\nreal time, 50 Hz, {args.seconds:g} s, MPPI K=1024 H=40 semi-parametric, "
                  f"daemon {args.daemon_threads} thread(s):")
            for k, v in rt.items():
                print(f"  {k:<20} {v:.3f}" if isinstance(v, float) else f"  {k:<20} {v}")
        if args.live_view:
            results["live_view_ms"] = live_view(tmp, args.n, args.n_paced, args.gap_ms * 1e-3, args.period_ms * 1e-3)
        if not args.skip_flood:
            rows = flood(tmp, args.flood_seconds, args.daemon_threads)
            results["flood_20hz"] = rows
            print_flood(rows, args.flood_seconds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
