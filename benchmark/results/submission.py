"""Checking a run before it is submitted to the leaderboards (`python -m benchmark check-submission
RUN_DIR`): what a reviewer would check by hand, as one line per check.

- same source: each (source, LM) of the run has the source identity and protocol of the committed
  rows there (a new source is said so: its rows start a table of their own);
- rows complete: every method covers every feature of the committed rows there (of the run's own
  features for a new source), once;
- headlines defined: no method's headline mean is NaN on any metric the run scored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.registry import UsageError
from benchmark.results.board_rows import IDENTITY, identity_of, read_run_scores
from benchmark.results.leaderboard import headline_columns


def check_submission(run_dpath: Path, board_dpath: Path) -> list[tuple[bool, str]]:
    """(passed, line) per check of the run in `run_dpath` against the leaderboard in `board_dpath`."""
    if not (run_dpath / "run.json").is_file():
        raise UsageError(f"{run_dpath}: no run.json (not a run directory)")
    scores = read_run_scores(run_dpath, "check-submission")
    out = []
    for (source, lm), part in scores.groupby(["source", "lm"], sort=True):
        committed_fpath = board_dpath / "rows" / f"{source}-{lm}.csv.gz"
        committed = pd.read_csv(committed_fpath, usecols=[*IDENTITY, "feature"]) if committed_fpath.is_file() else None
        ours = sorted(set(identity_of(part)))
        if committed is None:
            out.append((True, f"same source: {source} {lm} is new to {board_dpath} (identity / protocol "
                              f"{', '.join(ours)})"))
        else:
            theirs = sorted(set(identity_of(committed)))
            out.append((ours == theirs, f"same source: {source} {lm}: identity / protocol {', '.join(ours)}, the "
                        f"committed rows' {', '.join(theirs)}"))
        expected = set(committed.feature) if committed is not None else set(part.feature)
        for method, rows in part.groupby("method", sort=True):
            missing, twice = expected - set(rows.feature), int(rows.feature.duplicated().sum())
            out.append((not missing and not twice, f"rows complete: {source} {lm} {method}: {rows.feature.nunique()} of "
                        f"{len(expected)} features" + (f"; missing {sorted(missing)[:5]}..." if missing else "")
                        + (f"; {twice} twice" if twice else "")))
    for column in headline_columns(scores):
        means = scores.groupby("method")[column].mean()
        undefined = [m for m, v in means.items() if not np.isfinite(v)]
        out.append((not undefined, f"headlines defined: {column}" + (f": NaN for {', '.join(undefined)}" if undefined
                                                                      else "")))
    return out
