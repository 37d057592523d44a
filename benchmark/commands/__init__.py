"""The command line, one module per command: each has `add_parser(commands)`, which declares its
arguments and sets `run` to its `main(args) -> exit code`. Modules import their stage's code inside
`main`, so that a typo is refused before any model library is imported."""
from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Iterable

COMMANDS = {"run": "run", "methods": "listing", "metrics": "listing", "validate-metrics": "validate_metrics",
            "leaderboard": "leaderboard", "check-submission": "check_submission", "findings": "findings",
            "report": "report", "world": "world", "bench": "bench", "sae": "sae", "serve": "serve"}
"""Command -> the module of this package that declares it (`listing` declares two)."""


def emit(lines: Iterable[str], report: dict, as_json: bool) -> int:
    """Prints a command's lines for people, then with `--json` its report as one JSON line, the last;
    the exit code of a command that succeeded."""
    for line in lines:
        print(line)
    if as_json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def parser() -> argparse.ArgumentParser:
    """The `python -m benchmark` parser, each command's arguments declared by its module."""
    top = argparse.ArgumentParser(prog="python -m benchmark",
                                  description="featurebench: explain SAE features, score the explanations")
    commands = top.add_subparsers(dest="command", required=True)
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"benchmark.commands.{module}").add_parser(commands)
    return top
