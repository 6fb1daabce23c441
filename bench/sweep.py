"""Sweeps on Ray, measured: throughput serial vs local Ray vs a two-node cluster, Ray's
per-trial overhead, equality of the results, and the memory of a fleet refit.

    python bench/sweep.py [--json out.json] [--trials 8] [--steps 60] [--fleet-steps 2000000]
                          [--overhead-trials 4] [--skip-fleet] [--keep DIR]

Targets (issue 13), on a 2-core machine:
- 2 workers (local Ray) reach >= 1.7x the serial trials per second on a sweep of short trials;
- Ray's per-trial overhead (what the driver waits beyond the trial's own time, one trial at a
  time) is under 5 % of a 10 s trial;
- a refit over a synthetic fleet of >= 2 million steps peaks under 2 GB RSS (the baseline in
  the same run: ``load_steps`` of the same logs, the old way, holding every record);
- the cluster's per-trial results equal the serial ones (``cluster_equals_serial``).

Throughput excludes starting Ray (reported apart): a sweep long enough to matter amortises it.
Each trial is a real episode (the daemon's control step on the true car, a small MPPI). The
machine may be shared: every figure is from this one run, and the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from tools.sweep.cluster import LocalCluster  # noqa: E402
from tools.sweep.results import comparable, table  # noqa: E402
from tools.sweep.runner import init_ray, load_rows, run_sweep  # noqa: E402
from tools.sweep.spec import SweepSpec, expand  # noqa: E402
from tools.sweep.trial import run_trial  # noqa: E402

SMALL = ["planner.num_samples=64", "planner.horizon=10", "planner.compile=false"]


def spec(trials: int, steps: int) -> SweepSpec:
    return SweepSpec(name="bench", set=SMALL, tracks=["circle"], seeds=trials, max_steps=steps)


def timed_sweep(trials, out: Path, **executor) -> tuple[float, object]:
    started = time.perf_counter()
    run_sweep(trials, out, **executor)
    return time.perf_counter() - started, comparable(table(load_rows(out), [t.trial_id for t in trials]))


def ray_overhead(trials, n: int) -> dict[str, float]:
    """Driver's wait minus the trial's own wall time, one trial at a time on local Ray."""
    import ray

    started_here = init_ray(None, 1)
    try:
        remote = ray.remote(run_trial).options(num_cpus=1, max_retries=0)
        ray.get(remote.remote(trials[0]))  # the worker process starts and imports once
        overheads = []
        for trial in trials[:n]:
            t0 = time.perf_counter()
            row = ray.get(remote.remote(trial))
            overheads.append(time.perf_counter() - t0 - row["wall_s"])
    finally:
        if started_here:
            ray.shutdown()
    o = np.asarray(overheads) * 1e3
    return {"overhead_ms_median": float(np.median(o)), "overhead_ms_p99": float(np.percentile(o, 99))}


# -- fleet ----------------------------------------------------------------------------------
def _write_car(args: tuple[str, int, int]) -> None:
    """One car's logs: the kinematic car with known parameters through seeded manoeuvres."""
    folder, steps, seed = args
    from controller.translog import TransitionLog

    rng = np.random.default_rng(seed)
    period, wheelbase, gain = 0.05, 2.8, 0.9
    x = y = yaw = steer = 0.0
    v = 8.0
    noise = rng.normal(size=steps)
    log = TransitionLog(folder, flush_s=1.0)
    try:
        for k in range(steps):
            t = k * period
            episode, seq = divmod(k, 6000)  # 5-minute episodes
            rate = 0.3 * math.sin(0.7 * t) + 0.1 * noise[k] - 0.5 * steer
            accel = 1.5 * math.sin(0.23 * t) + 0.3 * (9.0 - v)
            log.step({"episode": episode, "seq": seq, "stamp": t, "received": t, "replied": t,
                      "state": {"x": x, "y": y, "steer": steer, "v": v, "yaw": yaw},
                      "action": {"steer_rate": rate, "accel": accel}, "status": "ok"})
            x += period * v * math.cos(yaw)
            y += period * v * math.sin(yaw)
            yaw += period * v * math.tan(gain * steer) / wheelbase
            steer = min(max(steer + period * rate, -0.6), 0.6)
            v = max(v + period * accel, 0.0)
    finally:
        # The writer thread may be far behind this loop: wait for every record.
        if not log.close(timeout_s=3600):
            raise RuntimeError(f"{folder}: the log writer did not finish")


def peak_rss_mb(command: list[str]) -> tuple[float, float, int, str]:
    """(peak RSS [MB], seconds, exit code, stdout) of a child process (ru_maxrss via wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        out.seek(0), err.seek(0)
        text = out.read().decode()
        if code != 0:
            print(err.read().decode()[-2000:], file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - started, code, text


def fleet(root: Path, steps: int, cars: int = 8) -> dict[str, float]:
    per_car = math.ceil(steps / cars)
    folders = [root / f"car{i}" for i in range(cars)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(min(cars, os.cpu_count() or 1)) as pool:
        pool.map(_write_car, [(str(f), per_car, i) for i, f in enumerate(folders)])
    written = time.perf_counter() - started
    refit, refit_s, code, text = peak_rss_mb([
        sys.executable, "-m", "tools.sysid", "fit", "--logs", *map(str, folders), "--out", str(root / "models"),
        "--no-residual", "--quiet", "--cache", str(root / "cache")])
    baseline, baseline_s, _, counted = peak_rss_mb([
        sys.executable, "-c", "import sys; from controller.translog import load_steps, log_files; "
        "print(len(load_steps(log_files(sys.argv[1:]))))", *map(str, folders)])
    fitted = int(text.split(" steps", 1)[0]) if code == 0 else -1  # "N steps, period ..."
    return {"fleet_steps": int(counted.strip() or -1), "fleet_steps_fitted": fitted, "fleet_cars": cars, "fleet_write_s": written,
            "fleet_refit_rss_mb": refit, "fleet_refit_s": refit_s, "fleet_refit_exit": code,
            "load_steps_rss_mb": baseline, "load_steps_s": baseline_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path)
    p.add_argument("--trials", type=int, default=8, help="trials per sweep")
    p.add_argument("--steps", type=int, default=60, help="control periods per trial")
    p.add_argument("--overhead-trials", type=int, default=4)
    p.add_argument("--fleet-steps", type=int, default=2_000_000)
    p.add_argument("--skip-fleet", action="store_true")
    p.add_argument("--skip-sweeps", action="store_true", help="only the fleet refit")
    p.add_argument("--keep", type=Path, help="keep the sweeps and the fleet here")
    args = p.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict = {"cpu_count": os.cpu_count()}
    if not args.skip_sweeps:
        results.update(sweeps(args, root))
    if not args.skip_fleet:
        results.update(fleet(root / "fleet", args.fleet_steps))
    results["load_avg_1min"] = os.getloadavg()[0]
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def sweeps(args: argparse.Namespace, root: Path) -> dict:
    trials = expand(spec(args.trials, args.steps))
    run_trial(trials[0])  # this process imports and builds once, as a Ray worker does

    serial_s, serial = timed_sweep(trials, root / "serial", executor="serial")
    t0 = time.perf_counter()
    init_ray(None, 2)
    ray_start_s = time.perf_counter() - t0
    import ray

    warm = expand(spec(2, 2))  # both workers start and import before the clock runs
    run_sweep(warm, root / "warm", executor="ray")
    local_s, local = timed_sweep(trials, root / "local", executor="ray")
    ray.shutdown()
    t0 = time.perf_counter()
    with LocalCluster(nodes=2, cpus_per_node=1) as cluster:
        cluster_start_s = time.perf_counter() - t0
        run_sweep(warm, root / "warm-cluster", executor="ray", address=cluster.address)
        cluster_s, clustered = timed_sweep(trials, root / "cluster", executor="ray", address=cluster.address)
    overhead = ray_overhead(trials, args.overhead_trials)

    n = len(trials)
    trial_s = float(serial_s / n)
    results = {
        "trials": n, "steps_per_trial": args.steps, "trial_s_serial": trial_s,
        "serial_trials_per_s": n / serial_s, "local_ray_trials_per_s": n / local_s,
        "cluster_trials_per_s": n / cluster_s, "ray_start_s": ray_start_s, "cluster_start_s": cluster_start_s,
        "speedup_2_workers": serial_s / local_s, "speedup_cluster": serial_s / cluster_s,
        **overhead, "overhead_pct": overhead["overhead_ms_median"] / 1e3 / 10.0 * 100,
        "local_equals_serial": bool(local.equals(serial)),
        "cluster_equals_serial": bool(clustered.equals(serial)),
    }
    return results


def report(results: dict) -> None:
    print(f"machine: {results['cpu_count']} cores, load average {results['load_avg_1min']:.2f} (shared machine)")
    if "serial_trials_per_s" in results:
        sweep_table(results)
    if "fleet_refit_rss_mb" in results:
        print(f"fleet: {results['fleet_steps']} steps in {results['fleet_cars']} cars; refit peak RSS "
              f"{results['fleet_refit_rss_mb']:.0f} MB in {results['fleet_refit_s']:.0f} s (target < 2048; "
              f"exit {results['fleet_refit_exit']}); load_steps of the same logs (baseline) "
              f"{results['load_steps_rss_mb']:.0f} MB, ratio {results['fleet_refit_rss_mb'] / results['load_steps_rss_mb']:.2f}")


def sweep_table(results: dict) -> None:
    ray_start_s, cluster_start_s, trial_s = results["ray_start_s"], results["cluster_start_s"], results["trial_s_serial"]
    print(f"{'executor':<22}{'trials/s':>10}{'x serial':>10}{'start [s]':>11}{'equal':>8}")
    print(f"{'serial':<22}{results['serial_trials_per_s']:>10.3f}{1.0:>10.2f}{0.0:>11.1f}{'-':>8}")
    print(f"{'local Ray, 2 workers':<22}{results['local_ray_trials_per_s']:>10.3f}{results['speedup_2_workers']:>10.2f}"
          f"{ray_start_s:>11.1f}{str(results['local_equals_serial']):>8}")
    print(f"{'2-node cluster, 1+1':<22}{results['cluster_trials_per_s']:>10.3f}{results['speedup_cluster']:>10.2f}"
          f"{cluster_start_s:>11.1f}{str(results['cluster_equals_serial']):>8}")
    print(f"trial {trial_s:.2f} s serial; Ray overhead per trial median {results['overhead_ms_median']:.1f} ms, "
          f"p99 {results['overhead_ms_p99']:.1f} ms = {results['overhead_pct']:.3f} % of a 10 s trial (target < 5 %)")
    print(f"speedup_2_workers {results['speedup_2_workers']:.2f} (target >= 1.7)")


if __name__ == "__main__":
    raise SystemExit(main())
