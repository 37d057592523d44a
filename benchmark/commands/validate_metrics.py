"""`validate-metrics`: each metric checked against the world's ground truth, with the leaderboard's
sanity numbers (separation from a random SAE, margin over the best constant label)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(commands) -> None:
    validate = commands.add_parser("validate-metrics", help="check each metric against the world's ground truth")
    validate.add_argument("--world", default="default")
    validate.add_argument("--lm", default="large", help="LM size whose methods' explanations are correlated with oracle")
    validate.add_argument("--metrics", default="all", help="all or a comma list")
    validate.add_argument("--board", default="leaderboards", metavar="DIR", help="leaderboard directory whose rows "
                          "give each metric's trained-vs-random-SAE separation and margin over the best constant "
                          "label for this (source, LM); none: skip (default: leaderboards)")
    validate.add_argument("--json", action="store_true", help="also print the report as one JSON line (last line)")
    validate.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.config.resolve import resolve
    from benchmark.config.scoring import ScoringConfig
    from benchmark.scoring.context import ScoringContext
    from benchmark.scoring.validation import validate, with_board_checks
    from benchmark.sources import open_source
    from metrics import named_metrics

    source = open_source(("world", args.world, args.lm))
    metrics = named_metrics(args.metrics)
    report = validate(source, metrics, ScoringContext(source, resolve(ScoringConfig(), source.protocol)))
    board = None if args.board in ("", "none") else Path(args.board)
    report = with_board_checks(report, board, source.name, source.lm, metrics, getattr(source, "protocol", None))
    for name, r in report.items():
        print(f"{name:<20} pairwise AUROC {fmt(r['pairwise_auroc'])}   Spearman with oracle {fmt(r['spearman_oracle'])}")
        separation = r["separation"] or {}
        print(f"{'':<20} vs random SAE, AUROC " + "   ".join(
            f"{m} {fmt((separation.get(m) or {}).get('auroc'))}" for m in ("topk", "steering", "hybrid"))
            + f"   margin over constant label {fmt((r['constant'] or {}).get('margin'))}"
            + (f" ({r['constant']['method']})" if r["constant"] else ""))
        for note in r["notes"]:
            print(f"{'':<20} note: {note}")
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0


def fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:.3f}"
