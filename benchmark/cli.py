"""Command line.

    python -m benchmark [--config run.toml] --method hybrid [--features 0:512] [--lm large] [--world default] [--out results]
                        [--protocol featurebench|seed] [--latents ids|alive] [--sae random:SEED]
                        [--metrics all] [--tune METRIC [--tune-features 0:128]]
                        [--backend local|ray [--address auto|ray://...] [--workers N]]
    python -m benchmark methods | metrics
    python -m benchmark validate-metrics [--lm large] [--board leaderboards] [--json]
    python -m benchmark leaderboard [--add RUN_DIR ... [--replace]] [--dir leaderboards] [--seeds DIR ...]
    python -m benchmark leaderboard --readme [--dir leaderboards] [--validation FILE]
    python -m benchmark check-submission RUN_DIR [--leaderboards leaderboards]
    python -m benchmark findings DIR [DIR ...] [--json]
    python -m benchmark report [--run RUN_DIR ...] [--leaderboards leaderboards] [--out report]
    python -m benchmark bench [--json]
    python -m benchmark bench --shape llava-1.5-7b|gemma-3-27b --random-weights --device cuda [--json]
    python -m benchmark bench --scale [--scale-shape seed|llava] [--images 500,1000,2000] [--json]
    python -m benchmark world build [--preset default|tiny|default@1] [--train | --seed N] [--json]
    python -m benchmark world ship [--preset default]
    python -m benchmark sae inspect PATH [--json]
    python -m benchmark serve [--config run.toml | --world default] [--lm large] [--port 8000]

Each command is a module of `benchmark.commands`. `run` is the default subcommand. User errors
(unknown names, bad paths, malformed files) are one line on stderr and exit code 2, with nothing
written.
"""
from __future__ import annotations

import sys

from benchmark.commands import COMMANDS, parser
from benchmark.registry import UsageError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    top = parser()
    args = top.parse_args(argv)
    try:
        if args.command == "run" and args.config:  # the file read once; its options are flags the command line overrides
            from benchmark.commands.run import run_options
            from benchmark.config.read import read_run_file

            run_file = read_run_file(args.config)
            args = top.parse_args(["run", *run_file.arguments(run_options()[1]), *argv[1:]])
            args.file = run_file
        return args.run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
