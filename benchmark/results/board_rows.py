"""A leaderboard directory's rows: `rows/<source>-<lm>.csv.gz`, one row per method and feature, read
with their identity checked (`load_rows`), and runs merged into them (`add_runs`) under a lock, each
file written atomically and byte-stable (gzip without a timestamp)."""
from __future__ import annotations

import fcntl
import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from benchmark.cache import write_atomic
from benchmark.registry import UsageError

KEYS = ["source", "lm", "method"]
ROW_COLUMNS = [*KEYS, "source_id", "protocol", "feature", "explanation", "concept", "category", "level", "aligned"]
IDENTITY = ["source_id", "protocol"]
COST_COLUMNS = ("cost_seconds", "cost_prompt_tokens", "cost_answer_tokens", "cost_images")
ROW_FORMAT = "%.9g"


def load_rows(dpath: Path) -> pd.DataFrame:
    files = sorted((dpath / "rows").glob("*.csv.gz"))
    if not files:
        raise UsageError(f"{dpath / 'rows'}: no score rows (*.csv.gz); add a run with --add RUN_DIR")
    rows = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise UsageError(f"{dpath / 'rows'}: rows lack {', '.join(missing)} (rows from before sources had an "
                         f"identity); regenerate them from runs")
    ids = identity_of(rows).groupby([rows.source, rows.lm]).nunique()
    if (ids > 1).any():
        source, lm = ids[ids > 1].index[0]
        raise UsageError(f"{dpath / 'rows'}: rows of {source} {lm} come from {ids.max()} different source identities "
                         f"or protocols; keep one (leaderboard --add RUN_DIR --replace), or put the other protocol's "
                         f"rows in their own leaderboard directory")
    return rows.sort_values([*KEYS, "feature"], kind="stable").reset_index(drop=True)


def read_run_scores(run_dpath: Path, flag: str) -> pd.DataFrame:
    """A run directory's scores.csv, checked for the row columns; `flag` names the option in errors."""
    scores_fpath = run_dpath / "scores.csv"
    if not scores_fpath.is_file():
        raise UsageError(f"{flag} {run_dpath}: no scores.csv (was the run made with --metrics none?)")
    scores = pd.read_csv(scores_fpath)
    missing = [c for c in ROW_COLUMNS if c not in scores.columns]
    if missing:
        raise UsageError(f"{scores_fpath}: missing columns {', '.join(missing)}")
    text = [c for c in COST_COLUMNS if c in scores.columns and not pd.api.types.is_numeric_dtype(scores[c])]
    if text:
        raise UsageError(f"{scores_fpath}: cost columns {', '.join(text)} are not numeric (give numbers, empty "
                         f"where unknown)")
    return scores


def add_runs(dpath: Path, runs: list[Path], replace: bool = False) -> None:
    """Merges runs' scores into the rows file of each (source, LM), replacing their methods' rows;
    with `replace`, rows of another source identity there are dropped instead of refused. Every run is
    checked before anything is written."""
    merged: dict[Path, pd.DataFrame] = {}
    for run_dpath in runs:
        new = read_run_scores(run_dpath, "--add")
        for (source, lm), part in new.groupby(["source", "lm"], sort=True):
            fpath = dpath / "rows" / f"{source}-{lm}.csv.gz"
            old = merged[fpath] if fpath in merged else pd.read_csv(fpath) if fpath.exists() else part.iloc[:0]
            ours = set(identity_of(part))
            if len(ours) > 1:
                raise UsageError(f"--add {run_dpath}: its {source} {lm} rows come from {len(ours)} source identities "
                                 f"or protocols")
            ours_id = ours.pop()
            known = all(c in old.columns for c in IDENTITY)
            kept = identity_of(old) == ours_id if known else pd.Series(False, old.index)
            if not kept.all() and not replace:
                theirs = ", ".join(sorted(set(identity_of(old)) - {ours_id})) if known else "none recorded"
                raise UsageError(f"--add {run_dpath}: computed on {source} {lm} with source identity / protocol "
                                 f"{ours_id}, but {fpath} holds rows of {theirs} (other models under the same name, or "
                                 f"another protocol: give each protocol its own --dir); to replace them, add it with "
                                 f"--replace, then add every method again")
            old = old[kept.to_numpy()]
            rows = pd.concat([old[~old.method.isin(part.method.unique())], part], ignore_index=True)
            merged[fpath] = rows.sort_values(["method", "feature"], kind="stable")
    for fpath, rows in merged.items():
        write_atomic(fpath, gzip_bytes(rows.to_csv(index=False, float_format=ROW_FORMAT, lineterminator="\n")))


def identity_of(rows: pd.DataFrame) -> pd.Series:
    """Each row's `source_id/protocol`."""
    return rows.source_id.astype(str) + "/" + rows.protocol.astype(str)


@contextmanager
def locked(dpath: Path) -> Iterator[None]:
    dpath.mkdir(parents=True, exist_ok=True)
    with open(dpath / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def gzip_bytes(text: str) -> bytes:
    """gzip with a zero timestamp, so equal rows give equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as fh:
        fh.write(text.encode())
    return buffer.getvalue()
