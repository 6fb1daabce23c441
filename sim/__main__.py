"""python -m sim: the simulator.

    python -m sim demo                 # the main job: start the daemon, drive a lap, summarise
    python -m sim drive --endpoint tcp://127.0.0.1:5555 --track circle [--realtime]

``demo`` starts ``python -m controller`` as a subprocess on a free loopback port, waits until
it answers (the first start compiles the planner: up to a minute or two on a small CPU), drives
the true car (dynamic single-track model with actuator lag) around the track, prints progress
and the summary, writes ``summary.json`` and the daemon's transition log under ``--out``, and
stops the daemon with SIGTERM.

The simulator runs torch on one thread (``SIM_THREADS``): it steps a single car, and a thread
pool would only compete with the daemon for the cores.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from controller.track import load_track
from sim.closed_loop import start_state
from sim.episode import EpisodeConfig, SensorNoise, Summary, run_episode
from sim.remote import ControllerClient, DaemonUnavailable
from vehicle_models.true_car import TrueCar
from vehicle_models.params import load_params
from vehicle_models.single_track import load_single_track_params

SIM_THREADS = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_episode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--track", default="circle", help="built-in name or TUM CSV (default: circle)")
    p.add_argument("--vehicle", default="passenger_car", help="true car's parameter set")
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
    overrides = {}
    for item in args.true:
        key, _, value = item.partition("=")
        overrides[key] = float(value)
    from vehicle_models.true_car import load_actuators

    actuators = load_actuators(args.vehicle, **({"dead_time": args.dead_time} if args.dead_time is not None else {}))
    return TrueCar(load_single_track_params(args.vehicle, **overrides), actuators)


def drive(client: ControllerClient, args: argparse.Namespace) -> Summary:
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

    return run_episode(client, car, track, x0, config, sensor, on_step=progress)


def report(summary: Summary, stats: dict | None, path: Path | None) -> None:
    print("\n".join(summary.lines()))
    if stats:
        print(f"  daemon: {stats.get('steps')} steps, solve p50 {stats.get('solve_ms_p50', 0):.2f} ms, "
              f"p99 {stats.get('solve_ms_p99', 0):.2f} ms, deadline misses {stats.get('deadline_misses')}, "
              f"model {stats.get('model')}")
        summary.extra.update({k: float(v) for k, v in stats.items() if isinstance(v, (int, float))})
    if path:
        summary.to_json(path)
        print(f"summary written to {path}")


def cmd_drive(args: argparse.Namespace) -> int:
    with ControllerClient(args.endpoint, timeout_s=1.0) as client:
        try:
            client.wait_ready(args.wait)
        except DaemonUnavailable:
            print(f"error: no daemon answers at {args.endpoint}", file=sys.stderr)
            return 2
        client.reset()
        summary = drive(client, args)
        report(summary, client.stats(), args.json)
    return 0 if summary.completed else 1


def cmd_demo(args: argparse.Namespace) -> int:
    out = args.out or Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "controller", "--bind", endpoint, "--track", args.track,
        "--log-dir", str(out / "logs"), *(["--planner", args.planner] if args.planner else []),
        *(f"--set={s}" for s in args.set),
    ]
    print(f"starting the daemon: {' '.join(command[1:])}")
    with open(out / "daemon.log", "w") as daemon_log:
        daemon = subprocess.Popen(command, stdout=daemon_log, stderr=subprocess.STDOUT)
    try:
        with ControllerClient(endpoint, timeout_s=1.0) as client:
            print("waiting for the daemon (the first start compiles the planner) ...", flush=True)
            started = time.perf_counter()
            while True:
                try:
                    client.wait_ready(5.0)
                    break
                except DaemonUnavailable:
                    if daemon.poll() is not None:
                        print(f"error: the daemon exited ({daemon.returncode}); see {out / 'daemon.log'}")
                        return 2
                    if time.perf_counter() - started > args.wait:
                        print(f"error: the daemon did not answer within {args.wait} s")
                        return 2
            print(f"daemon ready after {time.perf_counter() - started:.1f} s; driving {args.laps} lap(s) of {args.track}")
            for line in (out / "daemon.log").read_text(errors="replace").splitlines():
                if "native kernel cannot run" in line:  # backend auto fell back: say so here too
                    print(f"daemon: {line}", file=sys.stderr)
            client.reset()
            summary = drive(client, args)
            report(summary, client.stats(), out / "summary.json")
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    print(f"daemon stopped (exit {daemon.returncode}); transition log in {out / 'logs'}")
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
    args = parser.parse_args(argv)
    torch.set_num_threads(SIM_THREADS)
    return cmd_demo(args) if args.command == "demo" else cmd_drive(args)


if __name__ == "__main__":
    raise SystemExit(main())
