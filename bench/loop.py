"""Control-loop benchmark over real loopback ZeroMQ against a daemon subprocess.

1. Overhead: round-trip time of step requests minus the daemon's solve time (transport,
   decoding, validation, guard, logging), against a bare ZeroMQ ROUTER echo in the same run.
2. Real time: the simulator at 50 Hz for ``--seconds`` (60 by default), MPPI K=1024, H=40 on the
   semi-parametric model (a bundle with one 2x64 residual), paced by the wall clock: deadline
   misses (solve budget 0.6 x 20 ms) and late replies.

    python bench/loop.py [--seconds 60] [--json out.json] [--skip-realtime]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import torch
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.track import load_track  # noqa: E402
from sim.__main__ import free_port  # noqa: E402
from sim.closed_loop import start_state  # noqa: E402
from sim.episode import EpisodeConfig, run_episode  # noqa: E402
from sim.remote import ControllerClient  # noqa: E402
from vehicle_models.bundle import ModelBundle, save_bundle  # noqa: E402
from vehicle_models.params import load_params  # noqa: E402
from vehicle_models.residual import ResidualConfig, ResidualEnsemble  # noqa: E402
from vehicle_models.true_car import TrueCar  # noqa: E402

STATE = {"x": 0.0, "y": 0.0, "yaw": 0.0, "v": 5.0, "steer": 0.0}


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


def echo_baseline(n: int) -> np.ndarray:
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    done = threading.Event()

    def serve() -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not done.is_set():
            if poller.poll(50):
                router.send_multipart(router.recv_multipart())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    body = msgpack.packb({"type": "step", "seq": 0, "stamp": 0.0, "state": STATE})
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        dealer.send_multipart([b"", body])
        dealer.recv_multipart()
        out[i] = (time.perf_counter() - t0) * 1e3
        time.sleep(0.001)
    done.set()
    t.join()
    dealer.close(0)
    router.close(0)
    return out


def overhead(tmp: Path, n: int) -> np.ndarray:
    proc, endpoint = start_daemon(tmp / "overhead", ["planner.num_samples=64", "planner.horizon=10", "planner.compile=false"])
    try:
        with ControllerClient(endpoint) as client:
            client.reset()
            out = np.empty(n)
            for i in range(n):
                t0 = time.perf_counter()
                client.send({"type": "step", "seq": i, "stamp": 0.02 * i, "state": STATE})
                reply = client.receive(i, 5.0)
                rtt = (time.perf_counter() - t0) * 1e3
                out[i] = rtt - reply["solve_ms"]
                time.sleep(0.001)
    finally:
        stop(proc)
    return out


def semi_bundle(path: Path) -> Path:
    residual = ResidualEnsemble(4, 5, ResidualConfig(hidden=(64, 64), ensemble_size=1), seed=1)
    with torch.no_grad():
        residual.weights[-1].mul_(5)
    save_bundle(ModelBundle("bench-semi", load_params("passenger_car"), residual), path, overwrite=True)
    return path


def realtime(tmp: Path, seconds: float) -> dict:
    bundle = semi_bundle(tmp / "bundle")
    proc, endpoint = start_daemon(
        tmp / "realtime",
        [f"model.bundle={bundle}", "control_period=0.02", "planner.num_samples=1024", "planner.horizon=40",
         "planner.dt=0.05", "track=random:0"],
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
            "solve_ms_p50": stats["solve_ms_p50"], "solve_ms_p99": stats["solve_ms_p99"],
            "handle_ms_p99": stats["handle_ms_p99"], "round_trip_ms_p99": summary.round_trip_ms_p99,
            "mean_abs_lateral_m": summary.mean_abs_lateral_m, "offtrack_s": summary.offtrack_s}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--skip-realtime", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = echo_baseline(args.n)
        over = overhead(tmp, args.n)
        results["overhead"] = {
            "baseline_echo_ms": {"median": float(np.median(base)), "p99": float(np.percentile(base, 99))},
            "daemon_minus_solve_ms": {"median": float(np.median(over)), "p99": float(np.percentile(over, 99))},
        }
        print(f"{'round trip over loopback':<34} {'median ms':>10} {'p99 ms':>8} {'ratio p99':>10}")
        for name, t in (("bare ZeroMQ echo (baseline)", base), ("daemon step minus solve", over)):
            print(f"{name:<34} {np.median(t):>10.3f} {np.percentile(t, 99):>8.3f} "
                  f"{np.percentile(t, 99) / np.percentile(base, 99):>10.2f}")
        if not args.skip_realtime:
            rt = realtime(tmp, args.seconds)
            results["realtime_50hz"] = rt
            print(f"\nreal time, 50 Hz, {args.seconds:.0f} s, MPPI K=1024 H=40 semi-parametric:")
            for k, v in rt.items():
                print(f"  {k:<20} {v:.3f}" if isinstance(v, float) else f"  {k:<20} {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
