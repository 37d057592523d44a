"""`check-submission RUN_DIR`: what a reviewer would check by hand before a run joins the leaderboards."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands) -> None:
    submission = commands.add_parser("check-submission", help="check a run before it is added to the leaderboards: "
                                     "rows complete, the committed rows' source identity, no NaN headline")
    submission.add_argument("run_dir", metavar="RUN_DIR")
    submission.add_argument("--leaderboards", default="leaderboards", help="leaderboard directory (rows/ inside)")
    submission.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.results.submission import check_submission

    checks = check_submission(Path(args.run_dir), Path(args.leaderboards))
    for passed, line in checks:
        print(f"{'ok  ' if passed else 'FAIL'}  {line}")
    failed = sum(not passed for passed, _ in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed" + ("; fix the failing ones before a pull request"
                                                                   if failed else ""))
    return 2 if failed else 0
