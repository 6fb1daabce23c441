"""Cost of logging one control step: TransitionLog.step() against a bare queue put.

    python bench/translog.py [--n 20000] [--json out.json]

The control loop only enqueues; serialisation and writing happen on the log's thread. The
table shows median and p99 of the call as the loop sees it, while the writer thread runs.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.translog import TransitionLog  # noqa: E402


def record(i: int) -> dict:
    return {
        "episode": 0, "seq": i, "stamp": 0.05 * i, "received": time.time(), "replied": time.time(),
        "state": {"x": 1.0, "y": 2.0, "steer": 0.1, "v": 10.0, "yaw": 0.3, "yaw_rate": None, "slip": None},
        "action": {"steer_rate": 0.01, "accel": 0.5}, "status": "ok", "solve_ms": 3.2,
        "deadline_missed": False, "cost": 10.0, "cost_terms": {"lateral": 1.0, "heading": 2.0, "speed": 7.0},
        "planner": "mppi", "model": "kinematic",
    }


def timed(call, n: int, pace_s: float) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        r = record(i)
        t0 = time.perf_counter()
        call(r)
        out[i] = (time.perf_counter() - t0) * 1e6
        if pace_s:
            time.sleep(pace_s)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--pace", type=float, default=0.0005, help="sleep between calls [s]")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    q: queue.SimpleQueue = queue.SimpleQueue()
    baseline = timed(q.put, args.n, args.pace)
    with tempfile.TemporaryDirectory() as d:
        log = TransitionLog(d, flush_s=0.5)
        logged = timed(log.step, args.n, args.pace)
        log.close()
    rows = [("queue.put (baseline)", baseline), ("TransitionLog.step", logged)]
    print(f"{'call':<24} {'median us':>10} {'p99 us':>8} {'ratio p99':>10}")
    for name, t in rows:
        print(f"{name:<24} {np.median(t):>10.2f} {np.percentile(t, 99):>8.2f} "
              f"{np.percentile(t, 99) / np.percentile(baseline, 99):>10.2f}")
    if args.json:
        args.json.write_text(json.dumps([
            {"call": n, "median_us": float(np.median(t)), "p99_us": float(np.percentile(t, 99))} for n, t in rows
        ], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
