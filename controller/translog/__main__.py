"""python -m controller.translog {export,info} ... : transition-log tools."""

from __future__ import annotations

import argparse
import sys

from controller.translog.reader import LogError, export, load_steps, transitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.translog")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write step records as Parquet or CSV")
    ex.add_argument("logs", nargs="+", help="log files or directories")
    ex.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    ex.add_argument("--out", required=True)
    info = sub.add_parser("info", help="count records, episodes and transitions")
    info.add_argument("logs", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            rows = export(args.logs, args.out, args.format)
            print(f"wrote {rows} rows to {args.out}")
        else:
            steps = load_steps(args.logs)
            r = steps.report
            print(f"{r.files} files, {len(steps)} steps, {len(set(steps.episode.tolist()))} episodes, "
                  f"{len(transitions(steps))} transitions")
            if r.truncated_files:
                print(f"truncated: {', '.join(r.truncated_files)} ({r.unreadable_bytes} bytes unreadable)")
    except (LogError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
