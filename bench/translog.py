"""What logging one control step costs the control loop: TransitionLog.step() against a bare
queue put of the same record.

    python bench/translog.py [--n 10000] [--pace 0.0005] [--json out.json]

Two views, each measured with and without the log:
  call  the ``step()`` call alone, as the loop sees it while the writer thread runs;
  loop  a paced loop iteration (sleep ``--pace``, then the call), end to end. This also catches
        what the call alone cannot: the writer thread holding the GIL when the loop wakes up.
The budget is 0.2 ms added at p99 (docs/log_format.md).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.translog import TransitionLog, load_steps  # noqa: E402

BUDGET_US = 200.0


def record(k: int) -> dict[str, Any]:
    """A step record like the daemon's (cost terms of the default MPPI cost)."""
    now = time.time()
    return {
        "episode": 0,
        "seq": k,
        "stamp": 0.05 * k,
        "received": now,
        "replied": now,
        "state": {
            "x": 1.0,
            "y": 2.0,
            "steer": 0.1,
            "v": 10.0,
            "yaw": 0.3,
            "yaw_rate": None,
            "slip": None,
        },
        "action": {"steer_rate": 0.01, "accel": 0.5},
        "status": "ok",
        "solve_ms": 3.2,
        "deadline_missed": False,
        "cost": 10.0,
        "cost_terms": {"lateral": 1.0, "heading": 2.0, "speed": 7.0},
        "planner": "mppi",
        "model": "kinematic",
    }


def timed(
    call: Callable[[dict[str, Any]], None], n: int, pace_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(call durations, loop-iteration overruns beyond the sleep) in microseconds."""
    calls, loops = np.empty(n), np.empty(n)
    records = [record(k) for k in range(n)]  # built up front: only the call is timed
    for k in range(n):
        start = time.perf_counter()
        if pace_s:
            time.sleep(pace_s)
        t0 = time.perf_counter()
        call(records[k])
        t1 = time.perf_counter()
        calls[k] = (t1 - t0) * 1e6
        loops[k] = (t1 - start - pace_s) * 1e6
    return calls, loops


def stats(name: str, t: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    median, p99 = float(np.median(t)), float(np.percentile(t, 99))
    return {
        "name": name,
        "median_us": median,
        "p99_us": p99,
        "median_ratio": median / float(np.median(base)),
        "p99_ratio": p99 / float(np.percentile(base, 99)),
        "p99_added_us": p99 - float(np.percentile(base, 99)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="calls per variant")
    p.add_argument(
        "--pace", type=float, default=0.0005, help="sleep before each call [s]; 0 for back to back"
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    base_call, base_loop = timed(q.put, args.n, args.pace)
    with tempfile.TemporaryDirectory() as d:
        log = TransitionLog(d, flush_s=0.5)
        log_call, log_loop = timed(log.step, args.n, args.pace)
        closed = log.close(timeout_s=30.0)
        written = len(load_steps(d))
    rows = [
        stats("call: queue.put (baseline)", base_call, base_call),
        stats("call: TransitionLog.step", log_call, base_call),
        stats("loop: queue.put (baseline)", base_loop, base_loop),
        stats("loop: TransitionLog.step", log_loop, base_loop),
    ]
    print(f"{args.n} calls each, pace {args.pace * 1e3:.2f} ms; loop = time beyond the sleep")
    header = ("median us", "p99 us", "x median", "x p99", "p99 added us")
    print(f"{'':<28}" + "".join(f"{h:>14}" for h in header))
    for r in rows:
        values = (r["median_us"], r["p99_us"], r["median_ratio"], r["p99_ratio"], r["p99_added_us"])
        print(f"{r['name']:<28}" + "".join(f"{v:>14.2f}" for v in values))
    added = max(rows[1]["p99_added_us"], rows[3]["p99_added_us"])
    ok = added < BUDGET_US and closed and written == args.n
    verdict = "OK" if ok else "OVER BUDGET OR RECORDS MISSING"
    print(
        f"added at p99: {added:.1f} us (budget {BUDGET_US:.0f} us); "
        f"{written}/{args.n} records on disk -> {verdict}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "pace_s": args.pace,
                    "rows": rows,
                    "added_p99_us": added,
                    "budget_us": BUDGET_US,
                    "records_written": written,
                    "ok": ok,
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
