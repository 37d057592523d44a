"""`leaderboard`: leaderboards/*.csv regenerated from score rows (no model runs), or with `--readme`
the board's README, from its rows alone."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(commands) -> None:
    board = commands.add_parser("leaderboard", help="regenerate leaderboards/*.csv from score rows (no model runs)")
    board.add_argument("--add", nargs="*", default=[], metavar="RUN_DIR", help="merge these runs' scores first")
    board.add_argument("--dir", default="leaderboards", help="leaderboard directory (rows/ inside)")
    board.add_argument("--replace", action="store_true", help="with --add: the runs' rows replace every row of their "
                       "(source, LM), e.g. after the source's models changed")
    board.add_argument("--seeds", nargs="*", default=None, metavar="DIR", help="leaderboard directories of the same "
                       "worlds at other seeds, read for pairwise.csv's reseed spread (mrd); default: DIR/seeds when it "
                       "has rows; --seeds with no DIR: none")
    board.add_argument("--readme", action="store_true", help="write DIR/README.md (each method's means, what each "
                       "metric column measures, from the random-SAE and constant-label rows) from DIR's rows; no "
                       "table is rewritten")
    board.add_argument("--validation", metavar="FILE", help="with --readme: validate-metrics --json output whose "
                       "ground-truth agreement joins the README's table")
    board.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.registry import UsageError
    from benchmark.results.leaderboard import markdown, regenerate

    if args.readme:
        return write_board_readme(args)
    if args.validation:
        raise UsageError("--validation: only with --readme")
    if args.replace and not args.add:
        raise UsageError("--replace: give the runs whose rows replace the old ones with --add RUN_DIR")
    seeds = None if args.seeds is None else [Path(d) for d in args.seeds]
    tables = regenerate(Path(args.dir), [Path(p) for p in args.add], args.replace, seeds)
    print(markdown(tables["main"]))
    print(f"wrote {', '.join(str(Path(args.dir) / f'{n}.csv') for n in tables)}")
    return 0


def write_board_readme(args: argparse.Namespace) -> int:
    """Writes DIR/README.md from DIR's rows, nothing else (`benchmark.results.board_readme`)."""
    from benchmark.registry import UsageError
    from benchmark.results.board_readme import write_readme

    if args.add or args.replace or args.seeds is not None:
        raise UsageError("--readme writes the README from the rows as they are: run --add/--replace/--seeds first, "
                         "without it")
    agreement = None
    if args.validation:
        try:
            lines = Path(args.validation).read_text().strip().splitlines()
            agreement = json.loads(lines[-1]) if lines else None
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"--validation {args.validation}: not validate-metrics --json output ({e})") from None
        if not isinstance(agreement, dict):
            raise UsageError(f"--validation {args.validation}: not validate-metrics --json output")
    print(f"wrote {write_readme(Path(args.dir), agreement)}")
    return 0
