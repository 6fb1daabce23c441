"""python -m sim: the simulator.

    python -m sim demo                 # the main job: start the daemon, drive a lap, summarise
    python -m sim drive --endpoint tcp://127.0.0.1:5555 --track circle [--realtime]
    python -m sim ladder --track ../shared/tracks/Zandvoort.csv --car std   # the pace ladder

``ladder`` runs the pace ladder of ``tools.sysid ladder`` (tools/sysid/ladder.py) end to end:
per rung it drives the daemon (a subprocess) over the wire, refits, hot-reloads or raises the
pace, prints its progress, and at the end the lap-time table per rung.

``demo`` starts ``python -m controller`` as a subprocess on a free loopback port and waits until
it answers, showing its start-up lines (loading the track: seconds for a real track's
projection grid; building the planner: the first run compiles the native kernel, about 2 s,
cached; without a C compiler the planners run on torch, and the line says so). It then drives
the true car (``--car``: std, CommonRoad's drift model with tyre limits, the default; st, the
single-track model; both with actuator lag) around the track, prints progress
and the summary, writes ``summary.json`` and the daemon's transition log under ``--out``, and
stops the daemon with SIGTERM.

A daemon that exits is noticed at the next step: the demo says so, with the reason from
``daemon.log``, and still writes the summary of what was driven. Ctrl-C ends the episode after
the step in flight with the same partial summary (a second Ctrl-C aborts at once).

The simulator runs torch on one thread (``SIM_THREADS``): it steps a single car, and a thread
pool would only compete with the daemon for the cores.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from controller.track import TrackFormatError, load_track
from sim.cars import CARS, make_true_car, reference_lap_for
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, Reply, SensorNoise, Summary, run_episode
from sim.remote import ControllerClient, DaemonUnavailable
from vehicle_models.true_car import TrueCar
from vehicle_models.params import load_params

SIM_THREADS = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s: a daemon we started ends, bounded in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def add_episode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--track", default="circle", help="built-in name or TUM CSV (default: circle)")
    p.add_argument("--vehicle", default="passenger_car", help="true car's parameter set")
    p.add_argument("--car", choices=CARS, default=None,
                   help="true-car model: st (single-track) or std (drift, tyre limits); "
                        "default: the vehicle file's simulator.car")
    p.add_argument("--laps", type=float, default=1.0)
    p.add_argument("--speed", type=float, default=5.0, help="start speed [m/s]")
    p.add_argument("--period", type=float, default=0.05, help="control period [s]")
    p.add_argument("--realtime", action="store_true", help="wall-clock pacing (default: lockstep)")
    p.add_argument("--max-offtrack", type=float, default=2.0, help="end after this long off track [s]")
    p.add_argument("--dead-time", type=float, default=None, help="true car's input dead time [s]")
    p.add_argument("--true", action="append", default=[], metavar="PARAM=VALUE",
                   help="override a true-car parameter, e.g. mu=0.8 (mismatch)")
    p.add_argument("--noise", type=float, default=0.0, help="position noise std [m] (yaw 0.1x rad)")
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--quiet", action="store_true")


def make_car(args: argparse.Namespace) -> TrueCar:
    return make_true_car(args.vehicle, args.car, args.true, args.dead_time)


class Interrupt:
    """Ctrl-C ends the episode after the step in flight (a partial summary); a second aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> Interrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: ending the episode after this step (Ctrl-C again to abort)", flush=True)


class Watched:
    """The daemon client, answering "interrupted" after Ctrl-C and "exited" once the daemon
    process has ended, so the episode stops at once instead of resending for minutes."""

    def __init__(self, client: ControllerClient, interrupt: Interrupt, daemon: subprocess.Popen | None = None):
        self.client, self.interrupt, self.daemon = client, interrupt, daemon

    def reset(self) -> None:
        self.client.reset()

    def step(self, seq: int, stamp: float, state: dict[str, float], timeout_s: float) -> Reply:
        if self.interrupt.requested:
            return Reply(None, "interrupted", 0.0)
        if self.daemon is not None and self.daemon.poll() is not None:
            return Reply(None, "exited", 0.0)
        return self.client.step(seq, stamp, state, timeout_s)


def daemon_reason(log_path: Path) -> str | None:
    """The line of daemon.log that says why the daemon stopped: its ``error:`` line, else the
    last line of a traceback, else its last line."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith(("error:", "config error:")) or re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line):
            # a config error's problems follow it, one per line
            at = lines.index(line)
            return "\n".join(lines[at: at + 6]) if line.startswith("config error:") else line
    return lines[-1] if lines else None


class LogRelay:
    """Prints the daemon's start-up log lines (without their time stamps) as they appear."""

    _STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self.ready = False  #: the daemon printed its ``ready:`` line (it is bound and serving)

    def relay(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # whole lines only
        self.offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            if line.strip():
                self.ready = self.ready or line.startswith("ready: ")
                print(f"  daemon: {self._STAMP.sub('', line)}", flush=True)


def drive(client: ControllerClient | Watched, args: argparse.Namespace) -> Summary:
    track = load_track(args.track)
    car = make_car(args)
    x0 = np.zeros(7)
    x0[:5] = start_state(track, args.speed).numpy()
    width = load_params(args.vehicle).width
    config = EpisodeConfig(
        control_period=args.period,
        laps=args.laps,
        max_offtrack_s=args.max_offtrack,
        realtime=args.realtime,
        vehicle_width=width,
        reply_timeout_s=max(1.0, 4 * args.period),
    )
    sensor = SensorNoise(position_m=args.noise, yaw_rad=0.1 * args.noise) if args.noise else None
    last_report = [-1]
    total = args.laps * track.length

    def progress(n: int, state: np.ndarray, driven: float) -> None:
        tenth = int(10 * driven / total)
        if not args.quiet and tenth > last_report[0]:
            last_report[0] = tenth
            print(f"  {min(tenth * 10, 100):3d}%  t={n * args.period:6.1f} s  v={state[3]:5.2f} m/s", flush=True)

    summary = run_episode(client, car, track, x0, config, sensor, on_step=progress)
    summary.reference_lap_s = reference_lap_for(track, load_params(args.vehicle)).time_s
    return summary


def log_warnings(stats: dict) -> list[str]:
    """Warnings about the daemon's transition log from its stats (records lost, write errors)."""
    health = stats.get("log") or {}
    dropped, errors = health.get("records_dropped", 0), health.get("write_errors", 0)
    if not dropped and not errors:
        return []
    return [f"  WARNING: the daemon's transition log dropped {dropped} records ({errors} write errors; "
            f"last: {health.get('last_error')}); this run's log is incomplete"]


def report(summary: Summary, stats: dict | None, path: Path | None) -> None:
    print("\n".join(summary.lines()))
    if stats:
        print(f"  daemon: {stats.get('steps')} steps, solve p50 {stats.get('solve_ms_p50', 0):.2f} ms, "
              f"p99 {stats.get('solve_ms_p99', 0):.2f} ms, deadline misses {stats.get('deadline_misses')}, "
              f"model {stats.get('model')}")
        summary.extra.update({k: float(v) for k, v in stats.items() if isinstance(v, (int, float))})
        for line in log_warnings(stats):
            print(line)
    if path:
        summary.to_json(path)
        print(f"summary written to {path}")


def cmd_drive(args: argparse.Namespace) -> int:
    with ControllerClient(args.endpoint, timeout_s=1.0) as client, Interrupt() as interrupt:
        try:
            client.wait_ready(args.wait)
        except DaemonUnavailable:
            print(f"error: no daemon answers at {args.endpoint}", file=sys.stderr)
            return 2
        client.reset()
        summary = drive(Watched(client, interrupt), args)
        report(summary, client.stats(), args.json)
    return 0 if summary.completed else 1


def start_daemon(args: argparse.Namespace, out: Path, endpoint: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "controller", "--bind", endpoint, "--track", args.track,
        "--log-dir", str(out / "logs"), *(["--planner", args.planner] if args.planner else []),
        *(f"--set={s}" for s in args.set),
    ]
    with open(out / "daemon.log", "w") as daemon_log:
        # Its own session: Ctrl-C in the terminal reaches the demo only, which stops the
        # daemon itself once the summary (and the daemon's stats) are in.
        daemon = subprocess.Popen(command, stdout=daemon_log, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"started the daemon (pid {daemon.pid}): {' '.join(command[1:])}", flush=True)
    return daemon


def daemon_exited(daemon: subprocess.Popen, out: Path, when: str) -> None:
    print(f"error: the daemon exited {when} (exit {daemon.returncode}); see {out / 'daemon.log'}", flush=True)
    reason = daemon_reason(out / "daemon.log")
    if reason:
        print("\n".join(f"  daemon: {line}" for line in reason.splitlines()), flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    out = args.out or Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon = start_daemon(args, out, endpoint)
    summary: Summary | None = None
    try:
        with ControllerClient(endpoint, timeout_s=1.0) as client, Interrupt() as interrupt:
            print("waiting for the daemon to load the track, build and warm up the planner ...", flush=True)
            relay = LogRelay(out / "daemon.log")
            started = time.perf_counter()
            # Ping only once the daemon says it serves: pings sent before it binds queue up
            # in the client's socket and arrive at once, where the daemon sheds them as a flood.
            while True:
                relay.relay()
                try:
                    if not relay.ready:
                        time.sleep(0.1)
                        raise DaemonUnavailable("not ready yet")
                    client.wait_ready(1.0)
                    break
                except DaemonUnavailable:
                    if daemon.poll() is not None:
                        relay.relay()
                        daemon_exited(daemon, out, "before it was ready")
                        return 2
                    if interrupt.requested:
                        print("interrupted before the daemon was ready")
                        return 130
                    if time.perf_counter() - started > args.wait:
                        print(f"error: the daemon did not answer within {args.wait} s")
                        return 2
            relay.relay()
            print(f"daemon ready after {time.perf_counter() - started:.1f} s; driving {args.laps:g} lap(s) of {args.track}")
            client.reset()
            summary = drive(Watched(client, interrupt, daemon), args)
            if summary.end_reason == "exited":
                daemon_exited(daemon, out, f"after {summary.steps} steps")
            stats = client.stats() if daemon.poll() is None else None
            report(summary, stats, out / "summary.json")
    finally:
        stop_process(daemon)
    print(f"daemon stopped (exit {daemon.returncode}); transition log in {out / 'logs'}")
    if summary.end_reason == "interrupted":
        return 130
    return 0 if summary.completed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start the daemon, drive, summarise, stop")
    add_episode_args(demo)
    demo.add_argument("--planner", choices=("mppi", "ilqr", "mppi+ilqr"))
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="daemon config override")
    demo.add_argument("--out", type=Path, help="run directory (default runs/<UTC time>)")
    demo.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the daemon")
    drv = sub.add_parser("drive", help="drive against a running daemon")
    add_episode_args(drv)
    drv.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    drv.add_argument("--wait", type=float, default=30.0)
    from tools.sysid import ladder  # the pace ladder; it builds on this module's helpers

    ladder.add_ladder_args(sub.add_parser("ladder", help="the pace ladder: drive, refit, reload, faster"),
                           track_default="circle")
    args = parser.parse_args(argv)
    if args.command == "ladder":
        return ladder.cmd_ladder(args)
    torch.set_num_threads(SIM_THREADS)
    try:
        load_track(args.track)  # a bad track file fails here at once, with its line and reason
    except (TrackFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return cmd_demo(args) if args.command == "demo" else cmd_drive(args)
    except KeyboardInterrupt:  # the second Ctrl-C: the daemon is already stopped (finally)
        print("aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
