"""`findings DIR ...`: the README's findings tested on every source of these leaderboards."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(commands) -> None:
    findings = commands.add_parser("findings", help="the README's findings tested on every source of these "
                                   "leaderboards (a verdict on the first source, its p-value on each)")
    findings.add_argument("dirs", nargs="+", metavar="DIR", help="leaderboard directories (rows/ inside)")
    findings.add_argument("--json", action="store_true", help="also print both tables as one JSON line (last line)")
    findings.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    from benchmark.results.board_rows import load_rows
    from benchmark.results.findings import (
        CONTROLS,
        FIDELITY,
        FINDING_METHODS,
        control_comparisons,
        markdown,
        orderings,
        separation_markdown,
        separation_table,
        table,
        without_random_saes,
    )
    from benchmark.results.leaderboard import headline_columns

    rows = pd.concat([load_rows(Path(d)) for d in args.dirs], ignore_index=True)
    other = rows.protocol != "featurebench"  # another protocol's rows are a source of their own
    rows.loc[other, "source"] = rows.source[other] + " [" + rows.protocol[other] + "]"
    by_source = dict(list(rows.groupby("source", sort=False)))  # the first directory's first source leads
    separation = separation_table(by_source, headline_columns(rows))  # random SAEs: a control, not a source
    by_source = without_random_saes(by_source)
    found, order = table(by_source), orderings(by_source)
    print(markdown(found, order))
    if len(separation):
        print("\ntrained SAE vs random SAE: how well each metric tells their features apart (AUROC 0.5: not at all)")
        print(separation_markdown(separation))
    for source, source_rows in by_source.items():
        weak = control_comparisons(source_rows, "large")
        weak = weak[weak.p >= 0.05]
        print(f"{source}: methods vs controls, {len(weak)} of {len(FINDING_METHODS) * len(CONTROLS) * len(FIDELITY)} not "
              f"significant" + "".join(f"; {r.method} > {r.control} on {r.metric} p = {r.p:.2g}"
                                       for r in weak.itertuples()))
    if args.json:
        print(json.dumps({"findings": found.to_dict("records"), "orderings": order.to_dict("records"),
                          "separation": separation.to_dict("records")}, separators=(",", ":")))
    return 0
