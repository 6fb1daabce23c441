"""Running trials: serially in this process, or as Ray tasks (local Ray or a cluster).

Each finished trial is written at once to ``DIR/trials/<trial_id>.json`` (write, then rename:
an interrupted sweep leaves only whole files), so a sweep that is started again skips the
trials already there. The executor changes where a trial runs, never what it computes: a
trial's numbers depend only on the trial (see ``sim.closed_loop``), so serial, local Ray and
a cluster give the same rows.

Ray: ``address=None`` starts a private local Ray on this machine (loopback only, no
dashboard, no usage stats, a fresh auth token) and shuts it down afterwards; ``"auto"`` or ``"ray://host:10001"``
joins a running cluster and leaves it running. Each trial asks Ray for one CPU; with
``threads_per_trial`` > 1 it asks for that many, so Ray never puts more planner threads on a
node than it has cores.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tools.sweep.spec import Trial
from tools.sweep.trial import run_trial

Row = dict[str, Any]


def trials_dir(out: Path) -> Path:
    return out / "trials"


def done_ids(out: Path, retry_failed: bool = False) -> set[str]:
    """Ids of the trials with a result in ``out`` (failed ones excluded with ``retry_failed``)."""
    folder = trials_dir(out)
    if not folder.is_dir():
        return set()
    ids = set()
    for path in folder.glob("*.json"):
        if retry_failed:
            try:
                if json.loads(path.read_text()).get("status") != "ok":
                    continue
            except (OSError, ValueError):
                continue
        ids.add(path.stem)
    return ids


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def save_row(out: Path, row: Row) -> None:
    folder = trials_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{row['trial_id']}.json"
    partial = final.with_suffix(".json.partial")
    partial.write_text(json.dumps({k: _jsonable(v) for k, v in row.items()}, sort_keys=True))
    os.replace(partial, final)


def load_rows(out: Path) -> list[Row]:
    rows = []
    for path in sorted(trials_dir(out).glob("*.json")):
        row = json.loads(path.read_text())
        for key, value in row.items():
            if value in ("inf", "-inf"):
                row[key] = float(value)
        rows.append(row)
    return rows


class Progress:
    """A tqdm bar on a terminal; elsewhere (CI, a log file) about 20 plain lines and every
    failure, never a stream of carriage returns."""

    def __init__(self, total: int, initial: int = 0, stream: Any = None):
        self.total, self.done = total, initial
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="trial", file=self.stream)
        self.every = max(1, total // 20)
        self.started = time.perf_counter()

    def update(self, row: Row) -> None:
        self.done += 1
        failed = row.get("status") != "ok"
        if self.bar is not None:
            self.bar.update(1)
            if failed:
                self.bar.write(f"trial {row['trial_id']} failed: {row.get('error')}")
            return
        if failed or self.done % self.every == 0 or self.done == self.total:
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            note = f" FAILED: {row.get('error')}" if failed else ""
            print(f"[{self.done}/{self.total}] {row['track']} {row['car']} {row['planner']} {row['config']} "
                  f"seed {row['seed']}{note} ({rate:.2f} trials/s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_serial(trials: Iterable[Trial]) -> Iterator[Row]:
    for trial in trials:
        yield run_trial(trial)


def init_ray(address: str | None, workers: int | None) -> bool:
    """Connect to Ray; True when this call started it (and so must shut it down)."""
    from tools.sweep.cluster import private_ray_env

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if not address:
        private_ray_env()  # before Ray reads its settings from the environment
    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            address="local",  # a new private instance, never one that happens to be running
            num_cpus=workers or os.cpu_count(),
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=100 * 2**20,
        )
    return True


def run_ray(trials: list[Trial], address: str | None = None, workers: int | None = None) -> Iterator[Row]:
    """Each trial a Ray task; rows in the order they finish. A task that Ray itself loses (a
    worker killed) is a failed row, like an exception inside the trial."""
    import ray

    started_here = init_ray(address, workers)
    try:
        remote = ray.remote(run_trial)
        pending = {
            remote.options(num_cpus=trial.threads, max_retries=0).remote(trial): trial for trial in trials
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                trial = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as e:  # ray.exceptions.RayError and friends
                    yield trial.keys() | {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    trials: list[Trial],
    out: Path,
    executor: str = "ray",
    address: str | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    on_row: Callable[[Row], None] | None = None,
) -> tuple[int, int]:
    """Run the trials of ``trials`` not yet in ``out``; (ran, skipped)."""
    out.mkdir(parents=True, exist_ok=True)
    done = done_ids(out, retry_failed)
    todo = [t for t in trials if t.trial_id not in done]
    skipped = len(trials) - len(todo)
    progress = Progress(len(trials), initial=skipped)
    try:
        rows = run_serial(todo) if executor == "serial" or not todo else run_ray(todo, address, workers)
        for row in rows:
            save_row(out, row)
            progress.update(row)
            if on_row is not None:
                on_row(row)
    finally:
        progress.close()
    return len(todo), skipped
