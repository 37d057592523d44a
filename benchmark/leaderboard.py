"""Leaderboard tables, regenerated from per-feature score rows alone (no model runs).

`leaderboards/rows/<source>-<lm>.csv.gz` hold the per-feature rows (one per method and feature:
the source's content identity `source_id`, explanation, ground truth, every metric column, and the
`COST_COLUMNS` where the run recorded them); they are committed, and `--add RUN_DIR` merges a run's
`scores.csv` into them, replacing that run's methods (rows of a run without cost columns get NaN
there). A run whose `source_id` or `protocol` differs from the rows already there for its (source,
LM) is refused: its features are other latents of other models, whatever the name says, or were
scored otherwise (each protocol keeps its own leaderboard directory); `--replace` drops those rows
instead. From the rows come three tables:
- `main.csv`: per (source, LM, method), the protocol, the number of features, each metric's headline
  mean over the alive features with a 95% bootstrap CI, each pooled statistic the rows keep samples
  for (`<headline>_pooled`: one AUROC over every feature's samples, the seed paper's generation
  statistic, with a 95% bootstrap CI over features), then each cost column's median per feature over the
  features where it is finite (`<cost>_median`; NaN if none). Rows with no cost columns at all give
  no cost columns, so old rows give the tables they always gave;
- `per_category.csv`: the same means over aligned features, by level (low / high) and category;
- `pairwise.csv`: per (source, LM, metric), for every ordered pair of methods, does method a score
  better than b (higher, or lower where the metric's `higher_is_better` is False)? The paper's
  one-sided Mann–Whitney U, its p-value and whether p < 0.05 (`a_better`); the paired one-sided
  Wilcoxon signed-rank test on the per-feature differences (`p_paired`: the same features under
  both methods); both with Holm's correction across that (source, LM, metric)'s comparisons
  (`p_holm`, `p_paired_holm`).
Every write happens under an exclusive lock on `leaderboards/.lock` and replaces files atomically,
so concurrent writers serialise and a reader never sees a torn file. Output is deterministic.
"""
from __future__ import annotations

import fcntl
import gzip
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.registry import UsageError
from benchmark.results import write_atomic
from benchmark.stats import ALPHA, greater, holm, mean_ci, paired_greater, pooled_ci

KEYS = ["source", "lm", "method"]
ROW_COLUMNS = [*KEYS, "source_id", "protocol", "feature", "explanation", "concept", "category", "level", "aligned"]
IDENTITY = ["source_id", "protocol"]
"""What rows of one (source, LM) must share: the models' content and the protocol that scored them."""
COST_COLUMNS = ("cost_seconds", "cost_prompt_tokens", "cost_answer_tokens", "cost_images")
"""What one feature's explanation cost, its share of its method batch: wall seconds of the explaining
step, prompt tokens sent to the explainer (image tokens included), answer tokens generated, images
shown. Optional in rows; NaN where unknown (explanations made elsewhere, rows older than costs)."""
COST_MEDIANS = tuple(f"{c}_median" for c in COST_COLUMNS)
"""The main table's cost columns, in `COST_COLUMNS`' order."""
TABLE_FORMAT = "%.4g"
ROW_FORMAT = "%.9g"
"""Enough digits that a score read back from the rows equals a rerun's to 1e-6 (float32 has 7 to 9)."""


def headline_columns(rows: pd.DataFrame) -> list[str]:
    """Each registered metric's headline column that the rows hold, in metric-name order."""
    from metrics import all_metrics

    return [m.headline for m in all_metrics() if m.headline in rows.columns]


def main_table(rows: pd.DataFrame, headlines: list[str]) -> pd.DataFrame:
    """Per (source, LM, method): its protocol, features, each headline's mean with a bootstrap CI, each
    pooled statistic the rows' samples allow (`<headline>_pooled`, CI over features) and cost medians."""
    costs = [c for c in COST_COLUMNS if c in rows.columns]
    pooled = pooled_metrics(rows)
    out = []
    for key, group in rows.groupby(KEYS, sort=True):
        record = dict(zip(KEYS, key)) | {"protocol": group.protocol.iloc[0]}
        record["n_features"] = int(group[headlines].notna().any(axis=1).sum())
        for col in headlines:
            record[col], record[f"{col}_ci_low"], record[f"{col}_ci_high"] = mean_ci(group[col].to_numpy())
        for m in pooled:
            samples = [tuple(map(np.asarray, json.loads(v))) for v in group[m.samples_column] if isinstance(v, str) and v]
            name = f"{m.headline}_pooled"
            record[name], record[f"{name}_ci_low"], record[f"{name}_ci_high"] = pooled_ci(samples, m.pooled)
        record.update({f"{col}_median": finite_median(group[col].to_numpy()) for col in costs})
        out.append(record)
    return pd.DataFrame(out)


def pooled_metrics(rows: pd.DataFrame) -> list:
    """The registered metrics with a pooled statistic whose samples the rows keep."""
    from metrics import all_metrics

    return [m for m in all_metrics() if m.pooled is not None and m.samples_column in rows.columns]


def finite_median(values: np.ndarray) -> float:
    """The median of the finite values; NaN if there are none."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")


def category_table(rows: pd.DataFrame, headlines: list[str]) -> pd.DataFrame:
    aligned = rows[rows.aligned.astype(bool)]
    out = []
    for by in ("level", "category"):
        for key, group in aligned.groupby([*KEYS, by], sort=True):
            record = {**dict(zip(KEYS, key[:3])), "group_by": by, "group": key[3], "n_features": len(group)}
            record.update({col: group[col].mean() for col in headlines})
            out.append(record)
    return pd.DataFrame(out)


def directions(headlines: list[str]) -> dict[str, bool]:
    """Headline column -> whether higher is better, as each registered metric declares."""
    from metrics import all_metrics

    return {m.headline: m.higher_is_better for m in all_metrics() if m.headline in headlines}


def pairwise_table(rows: pd.DataFrame, headlines: list[str], higher: dict[str, bool] | None = None) -> pd.DataFrame:
    """Every ordered pair of methods per (source, LM, metric): "a scores better than b" (`higher`:
    headline -> higher is better; default: the registered metrics' declarations) by the paper's
    Mann–Whitney U (`u`, `p_value`, `a_better`) and by a paired test, Wilcoxon signed-rank on the
    per-feature differences (`p_paired`); each with Holm's correction across the (source, LM,
    metric)'s comparisons (`p_holm`, `p_paired_holm`)."""
    higher = directions(headlines) if higher is None else higher
    out = []
    for (source, lm), group in rows.groupby(["source", "lm"], sort=True):  # one source_id each (`load_rows`)
        scores = group.pivot_table(index="feature", columns="method", values=headlines, aggfunc="first", dropna=False)
        methods = sorted(set(group.method))
        for col in headlines:
            sign = 1.0 if higher.get(col, True) else -1.0  # a lower error is the better score
            family = []
            for a, b in permutations(methods, 2):
                a_F, b_F = sign * scores[col][a].to_numpy(), sign * scores[col][b].to_numpy()  # F: features
                u, p = greater(a_F, b_F)
                family.append({"source": source, "lm": lm, "metric": col, "method_a": a, "method_b": b, "u": u,
                               "p_value": p, "a_better": bool(p < ALPHA), "p_paired": paired_greater(a_F, b_F)[1]})
            table = pd.DataFrame(family)
            if len(table):
                table["p_holm"], table["p_paired_holm"] = holm(table.p_value), holm(table.p_paired)
            out.append(table)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


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
        write_atomic(fpath, _gzip(rows.to_csv(index=False, float_format=ROW_FORMAT, lineterminator="\n")))


def identity_of(rows: pd.DataFrame) -> pd.Series:
    """Each row's `source_id/protocol`."""
    return rows.source_id.astype(str) + "/" + rows.protocol.astype(str)


def regenerate(dpath: Path, add: list[Path] = (), replace: bool = False) -> dict[str, pd.DataFrame]:
    """Adds runs (if any; `replace`: dropping rows of another source identity), then rewrites the three
    tables from the rows; all under the lock."""
    for run_dpath in add:
        if not Path(run_dpath).is_dir():
            raise UsageError(f"--add {run_dpath}: no such run directory")
    with _locked(dpath):
        add_runs(dpath, [Path(p) for p in add], replace)
        rows = load_rows(dpath)
        headlines = headline_columns(rows)
        tables = {"main": main_table(rows, headlines), "per_category": category_table(rows, headlines),
                  "pairwise": pairwise_table(rows, headlines)}
        for name, table in tables.items():
            write_atomic(dpath / f"{name}.csv", table.to_csv(index=False, float_format=TABLE_FORMAT, lineterminator="\n"))
    return tables


def markdown(main: pd.DataFrame) -> str:
    """The main table's means as a Markdown table (for the README), and the median seconds per
    feature where the table has costs."""
    headlines = [c for c in main.columns if c not in (*KEYS, "protocol", "n_features", *COST_MEDIANS)
                 and not c.endswith(("_ci_low", "_ci_high"))]
    seconds = [c for c in ("cost_seconds_median",) if c in main.columns]
    names = [*KEYS, "n", *headlines, *(["s / feature"] if seconds else [])]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    for r in main.itertuples(index=False):
        cells = [r.source, r.lm, r.method, str(r.n_features)]
        cells += [f"{getattr(r, c):.3f}" if not np.isnan(getattr(r, c)) else "–" for c in headlines]
        cells += [f"{getattr(r, c):.3g}" if not np.isnan(getattr(r, c)) else "–" for c in seconds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextmanager
def _locked(dpath: Path) -> Iterator[None]:
    dpath.mkdir(parents=True, exist_ok=True)
    with open(dpath / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _gzip(text: str) -> bytes:
    """gzip with a zero timestamp, so equal rows give equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as fh:
        fh.write(text.encode())
    return buffer.getvalue()
