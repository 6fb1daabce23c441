"""Transition-log tools.

    python -m controller.translog info LOG [LOG ...]
    python -m controller.translog export LOG [LOG ...] --format parquet --out steps.parquet

LOG is an .mcap file or a directory of them. Exit code 0 on success, 2 on an unreadable input
or output (with a one-line message, no traceback).
"""

from __future__ import annotations

import argparse
import sys

from controller.translog.export import FORMATS, write_table
from controller.translog.reader import LogError, ReadReport, load_steps, transitions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m controller.translog", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the step records as one Parquet or CSV table")
    ex.add_argument("logs", nargs="+", help="log files or directories of them")
    ex.add_argument("--format", choices=FORMATS, default="parquet")
    ex.add_argument("--out", required=True, help="output file")
    info = sub.add_parser("info", help="count records, episodes and transitions")
    info.add_argument("logs", nargs="+", help="log files or directories of them")
    return parser


def _describe(report: ReadReport) -> str:
    notes = []
    if report.truncated_files:
        notes.append(
            f"cut short (read up to the last complete record, {report.unreadable_bytes} "
            f"bytes unreadable): {', '.join(report.truncated_files)}"
        )
    if report.unfinished_files:
        notes.append(
            "no footer (the daemon was killed or is still writing; every complete record was "
            f"read): {', '.join(report.unfinished_files)}"
        )
    if report.corrupt_files:
        notes.append(f"corrupt (read up to the damage): {', '.join(report.corrupt_files)}")
    if report.bad_messages:
        notes.append(f"{report.bad_messages} messages were not JSON and were skipped")
    return "\n".join(notes)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "export":
            steps = load_steps(args.logs)
            rows = write_table(steps, args.out, args.format)
            print(f"wrote {rows} rows to {args.out}")
        else:
            steps = load_steps(args.logs)
            report = steps.report
            episodes = len(set(zip(steps.session.tolist(), steps.episode.tolist())))
            print(
                f"{report.files} files, {report.records} records, {len(steps)} steps, "
                f"{len(steps.sessions())} sessions, {episodes} episodes, {len(transitions(steps))} transitions"
            )
        if _describe(steps.report):
            print(_describe(steps.report))
    except (LogError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
