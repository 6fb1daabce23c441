"""Read a transition log into a pandas DataFrame (one row per control step).

    python examples/log_to_dataframe.py runs/<run>/logs

Columns: episode, seq, stamp, received, replied, state_<field>, action_<field>, status,
solve_ms, deadline_missed, cost, cost_<term>, planner, model (docs/log_format.md). Needs
pandas: ``pip install -e '.[analysis]'``. For polars: ``polars.DataFrame(columns(steps))``.
"""

from __future__ import annotations

import argparse

import pandas as pd

from controller.translog import load_steps
from controller.translog.export import columns


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", help="log files or directories")
    args = p.parse_args(argv)

    steps = load_steps(args.logs)  # tolerates files cut by a crash; steps.report says what was cut
    frame = pd.DataFrame(columns(steps))
    frame["handle_ms"] = (frame["replied"] - frame["received"]) * 1e3
    print(f"{len(frame)} steps, {frame['episode'].nunique()} episode(s), columns: {', '.join(frame.columns[:8])}, ...")
    print(frame.groupby("status")["solve_ms"].describe()[["count", "50%", "max"]].to_string())
    print(f"mean speed {frame['state_v'].mean():.2f} m/s, handle p99 {frame['handle_ms'].quantile(0.99):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
