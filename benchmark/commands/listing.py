"""`methods` and `metrics`: the registered methods and metrics, one line each."""
from __future__ import annotations

import argparse
import sys


def add_parser(commands) -> None:
    commands.add_parser("methods", help="list the registered methods").set_defaults(run=list_methods)
    commands.add_parser("metrics", help="list the registered metrics").set_defaults(run=list_metrics)


def list_methods(args: argparse.Namespace) -> int:
    import methods  # noqa: F401  (registers the built-in methods)
    from benchmark.registry import METHODS

    for name in METHODS.names():
        doc = (METHODS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<18} {doc[0] if doc else ''}")
    return 0


def list_metrics(args: argparse.Namespace) -> int:
    from metrics import all_metrics

    for m in all_metrics():
        doc = (sys.modules[m.score.__module__].__doc__ or "").strip().splitlines()
        print(f"{m.name:<20} {', '.join(m.columns):<70} {doc[0] if doc else ''}")
    return 0
