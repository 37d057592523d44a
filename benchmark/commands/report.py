"""`report`: a static HTML report of runs and leaderboards."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands) -> None:
    report = commands.add_parser("report", help="write a static HTML report of runs and leaderboards")
    report.add_argument("--run", nargs="*", default=[], dest="runs", metavar="RUN_DIR",
                        help="run directories whose features get pages")
    report.add_argument("--leaderboards", default="leaderboards", help="leaderboard directory for the index tables "
                        "('' to use the runs' own scores)")
    report.add_argument("--out", default="report", help="directory to write (an earlier report there is replaced)")
    report.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.report import write_report

    board = Path(args.leaderboards) if args.leaderboards else None
    out = write_report([Path(d) for d in args.runs], Path(args.out), board)
    print(f"report: {out / 'index.html'}")
    return 0
