"""The report's page data as plain dicts and DataFrames, made from score rows and leaderboard
tables by pure functions, so that what each page shows is tested without a browser or a world.

Leaderboard side: each headline mean with its CI and a significance mark against the best method
of its (source, LM); the median costs per feature; pairwise p-value matrices; per-category pivots;
the series the plots draw.
Feature side: one row per (source, feature) with its ground truth (the gallery's index), one column
file per label (a run's method: explanations and headline scores, the gallery's filter and sort
keys), and the detail records of the feature pages in shards of `SHARD` consecutive feature ids.

Orders come from the data, not from any world's registry (which would tie the report to it): LM
names smallest first by the size their names give (`lm_order`); levels low, then high, then
categories under their level as the rows give it (`group_order`).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from benchmark.report.inputs import Run
from benchmark.results.board_rows import KEYS
from benchmark.results.leaderboard import COST_MEDIANS
from benchmark.scoring.stats import ALPHA

SHARD = 100
"""Feature ids per feature-page data file: a page loads one file of at most this many features."""
TRUTH = ["concept", "category", "level", "aligned"]
LEVELS = ("low", "high")
"""The levels rows give a concept, in the order pages show them; any other level follows, sorted."""
SIZE_WORDS = ("nano", "tiny", "mini", "small", "base", "medium", "large", "xl", "xxl")
"""Size words in LM names, smallest first (the world's small, medium, large; T5's base, xl)."""
PARAMETERS = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([kmbt])(?![a-z])", re.IGNORECASE)
"""A parameter count in an LM name: the 7b of llava-1.5-7b, the 350m of opt-350m."""
DIGITS = 4
PREFERRED_METRIC = "detection_auroc"
"""The metric a page shows first, when the tables have it (the README's first column)."""


def metric_columns(main: pd.DataFrame) -> list[str]:
    """The headline metric columns of a main table (not its keys, counts, CI bounds, costs, or the
    pooled statistics, which have no per-feature values to plot or test: `main.csv` has them)."""
    return [c for c in main.columns if c not in (*KEYS, "protocol", "n_features", *COST_MEDIANS)
            and not c.endswith(("_ci_low", "_ci_high", "_pooled"))]


def cost_columns(main: pd.DataFrame) -> list[str]:
    """The median-cost columns a main table holds, in `COST_MEDIANS`' order."""
    return [c for c in COST_MEDIANS if c in main.columns]


def default_metric(metrics: list[str]) -> str:
    return PREFERRED_METRIC if PREFERRED_METRIC in metrics else (metrics[0] if metrics else "")


def clean(value):
    """A JSON-safe scalar: NaN and None become None, floats are rounded, numpy types unwrapped."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, float | np.floating):
        return round(float(value), DIGITS)
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---- leaderboard ------------------------------------------------------------------------------

def marked_cells(main: pd.DataFrame, pairwise: pd.DataFrame, higher: dict[str, bool]) -> pd.DataFrame:
    """One row per (source, lm, method, metric): mean, CI, and `mark`: "best" for the method with the
    best mean in its (source, lm), "tied" where the best is not significantly better (one-sided
    Mann–Whitney p >= ALPHA, the p-value in `p`; `pairwise` tests "better" in each metric's own
    direction), "" where it is. Metrics missing from `higher` count as higher-is-better."""
    pairs = pairwise.set_index(["source", "lm", "metric", "method_a", "method_b"]).p_value.to_dict()
    out = []
    for (source, lm), group in main.groupby(["source", "lm"], sort=False):
        for col in metric_columns(main):
            sign = 1.0 if higher.get(col, True) else -1.0
            signed = group[col] * sign
            best = group.method[signed.idxmax()] if signed.notna().any() else None
            for r in group.to_dict("records"):
                p = math.nan if best is None or r["method"] == best else pairs.get((source, lm, col, best, r["method"]),
                                                                                   math.nan)
                mark = "best" if r["method"] == best else ("tied" if p >= ALPHA else "")
                out.append({"source": source, "lm": lm, "protocol": r.get("protocol", "featurebench"),
                            "method": r["method"], "metric": col, "mean": r[col],
                            "low": r.get(f"{col}_ci_low", math.nan), "high": r.get(f"{col}_ci_high", math.nan),
                            "n_features": r["n_features"], "mark": mark, "p": p})
    return pd.DataFrame(out)


def pairwise_matrix(pairwise: pd.DataFrame, source: str, lm: str, metric: str) -> tuple[list[str], list[list[float]]]:
    """Methods and p[i][j], the p-value of "method i scores better than method j" (NaN on the diagonal)."""
    part = pairwise[(pairwise.source == source) & (pairwise.lm == lm) & (pairwise.metric == metric)]
    methods = sorted(set(part.method_a) | set(part.method_b))
    p = part.set_index(["method_a", "method_b"]).p_value.to_dict()
    return methods, [[p.get((a, b), math.nan) for b in methods] for a in methods]


def pairwise_noise(pairwise: pd.DataFrame, source: str, lm: str, metric: str,
                   methods: list[str]) -> tuple[float, list[list[float]]]:
    """The (source, LM, metric)'s minimum reliable difference and d[i][j], method i's mean advantage over
    method j (`diff`); NaN where the table has no such columns (tables from before the MRD)."""
    part = pairwise[(pairwise.source == source) & (pairwise.lm == lm) & (pairwise.metric == metric)]
    if "mrd" not in part or part.empty:
        return math.nan, [[math.nan] * len(methods) for _ in methods]
    d = part.set_index(["method_a", "method_b"])["diff"].to_dict()
    return float(part.mrd.iloc[0]), [[d.get((a, b), math.nan) for b in methods] for a in methods]


def group_order(levels: list[str], categories: list[str], level_of: dict[str, str]) -> list[str]:
    """Levels in `LEVELS`' order, others sorted; then categories under their level (`level_of`:
    category -> level, as the rows give it) in that order, alphabetically within a level; categories
    of unknown level last, alphabetically. A leaderboard alone gives no `level_of`: its categories
    are sorted."""
    levels = sorted(set(levels), key=_level_key)
    return [*levels, *sorted(set(categories), key=lambda c: (_level_key(level_of.get(c)), c))]


def _level_key(level: str | None) -> tuple:
    return (0, LEVELS.index(level), "") if level in LEVELS else (1, 0, level) if level else (2, 0, "")


def category_levels(rows: pd.DataFrame | None) -> dict[str, str]:
    """category -> level, the first level the rows give it (none without rows or ground truth)."""
    if rows is None:
        return {}
    pairs = rows[["category", "level"]].dropna().drop_duplicates("category")
    return dict(zip(pairs.category, pairs.level))


def category_pivot(per_category: pd.DataFrame, metric: str, level_of: dict[str, str]) -> pd.DataFrame:
    """Rows (source, lm, method), columns the level and category groups (`group_order`), values
    `metric`'s mean over the aligned features of that group."""
    table = per_category.pivot_table(index=KEYS, columns="group", values=metric, aggfunc="first", sort=True)
    kind = per_category.drop_duplicates("group").set_index("group").group_by
    groups = list(table.columns)
    return table[group_order([g for g in groups if kind[g] == "level"], [g for g in groups if kind[g] != "level"],
                             level_of)]


def lm_order(lms: list[str]) -> list[str]:
    """LM names smallest first, read from the names alone (a leaderboard records no sizes): by the
    parameter count a name gives (7b before 13b), then by a size word (`SIZE_WORDS`), then the rest
    sorted."""
    return sorted(set(lms), key=_size_key)


def _size_key(lm: str) -> tuple:
    count = PARAMETERS.search(lm)
    if count:
        return 0, float(count[1]) * 1000.0 ** "kmbt".index(count[2].lower()), lm
    words = [SIZE_WORDS.index(w) for w in re.split(r"[^a-z]+", lm.lower()) if w in SIZE_WORDS]
    return (1, words[0], lm) if words else (2, 0, lm)


def by_method(main: pd.DataFrame, source: str, metric: str, lms: list[str]) -> tuple[list[str], dict[str, list]]:
    """Methods, and per LM size the (mean, low, high) of `metric` for each method (None if absent)."""
    part = main[main.source == source]
    methods = sorted(set(part.method))
    series = {}
    for lm in lms:
        rows = part[part.lm == lm].set_index("method")
        series[lm] = [tuple(rows.loc[m, [metric, f"{metric}_ci_low", f"{metric}_ci_high"]]) if m in rows.index
                      else None for m in methods]
    return methods, series


def quality_cost(main: pd.DataFrame, source: str, lm: str) -> tuple[str, list[tuple[str, float, float]]]:
    """The quality-vs-cost plot of one (source, LM): the quality metric, `default_metric` of the
    table's metrics (detection AUROC when present, else the first), and per method, sorted, with a
    finite median `cost_seconds` and a finite mean of that metric: (method, seconds, mean). No points
    when the table has no costs."""
    metric = default_metric(metric_columns(main))
    if not metric or "cost_seconds_median" not in main.columns:
        return metric, []
    part = main[(main.source == source) & (main.lm == lm)].sort_values("method", kind="stable")
    points = [(m, float(c), float(q)) for m, c, q in zip(part.method, part.cost_seconds_median, part[metric])]
    return metric, [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]


def by_level(per_category: pd.DataFrame, source: str, lm: str, metric: str) -> tuple[list[str], dict[str, list]]:
    """Methods, and per level (low, high) `metric`'s mean over aligned features of that level."""
    part = per_category[(per_category.source == source) & (per_category.lm == lm) & (per_category.group_by == "level")]
    methods = sorted(set(part.method))
    values = part.set_index(["method", "group"])[metric].to_dict()
    levels = group_order(list(part.group), [], {})
    return methods, {lv: [(values[m, lv],) if (m, lv) in values else None for m in methods] for lv in levels}


def by_lm(main: pd.DataFrame, source: str, metric: str, lms: list[str]) -> dict[str, list[float]]:
    """Per method, `metric`'s mean at each LM size in `lms` (NaN where that size has no run)."""
    part = main[main.source == source]
    values = part.set_index(["method", "lm"])[metric].to_dict()
    return {m: [values.get((m, lm), math.nan) for lm in lms] for m in sorted(set(part.method))}


# ---- features ---------------------------------------------------------------------------------

def method_labels(keys: list[tuple[str, str, str, str]]) -> dict[tuple[str, str, str, str], str]:
    """(run, source, lm, method) -> the label a run's method goes by: the method's name, or with the
    run's name added where two runs give the same (source, lm, method)."""
    counts: dict[tuple[str, str, str], int] = {}
    for _, source, lm, method in keys:
        counts[source, lm, method] = counts.get((source, lm, method), 0) + 1
    return {k: k[3] if counts[k[1:]] == 1 else f"{k[3]} ({k[0]})" for k in keys}


def combine_rows(runs: list[Run], scales: dict[str, pd.Series], readers: dict[str, frozenset[str]]) -> pd.DataFrame:
    """Every run's score rows in one table with `run`, `label` (the name its method goes by, with its
    protocol in brackets when that is not featurebench),
    `multiplier` and `coefficient`. A method that reads the run's multiplier field f (`readers`:
    field -> methods) steered feature i with `run.json[f] * scales[source][i]`, or with the run's
    absolute coefficient (`method_config`'s `*_coeff`) when it set one; the others get NaN."""
    parts = []
    for run in runs:
        part = run.scores.copy()
        part.insert(0, "run", run.name)
        fields = {m: f for f, methods in readers.items() for m in methods}
        absolute = {m: (run.meta.get("method_config") or {}).get(f.replace("_multiplier", "_coeff"))
                    for m, f in fields.items()}
        part["multiplier"] = [run.meta.get(fields[m], math.nan) if m in fields and absolute[m] is None else math.nan
                              for m in part.method]
        coefficient = part.multiplier * scales[run.source].reindex(part.feature).to_numpy()
        part["coefficient"] = [absolute.get(m) or c for m, c in zip(part.method, coefficient)]
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    rows["explanation"] = rows.explanation.fillna("")  # an empty answer reads back from CSV as NaN
    named = [m if p == "featurebench" else f"{m} [{p}]" for m, p in zip(rows.method, rows.protocol)]  # another
    keys = list(dict.fromkeys(zip(rows.run, rows.source, rows.lm, named)))  # protocol's rows say so in their label
    label_of = method_labels(keys)
    rows.insert(1, "label", [label_of[k] for k in zip(rows.run, rows.source, rows.lm, named)])
    return rows


def table_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The combined rows in the shape `benchmark.results.leaderboard` tabulates: the label as the method."""
    return rows.drop(columns=["method"]).rename(columns={"label": "method"})


def labels(rows: pd.DataFrame) -> list[dict]:
    """Each (run, method) once, in run order: label, run, source, lm, method."""
    first = rows.drop_duplicates(["run", "label"])
    return [{"label": r.label, "run": r.run, "source": r.source, "lm": r.lm, "method": r.method}
            for r in first.itertuples(index=False)]


def feature_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, feature), sorted, with its ground truth and `key` ("source/feature")."""
    table = rows.drop_duplicates(["source", "feature"])[["source", "feature", *TRUTH]]
    table = table.sort_values(["source", "feature"], kind="stable").reset_index(drop=True)
    table.insert(0, "key", [f"{s}/{f}" for s, f in zip(table.source, table.feature)])
    return table


def shard_name(source: str, feature: int) -> str:
    return f"{source}-{feature // SHARD * SHARD}"


def gallery_index(features: pd.DataFrame, label_list: list[dict], headlines: list[str], page_size: int,
                  no_truth: list[str] = ()) -> dict:
    """What the gallery loads first, column-wise (one list per field): per (source, feature) its key,
    ground truth and thumbnail; the labels and metrics to choose from; categories to filter by;
    `no_truth`, the sources without ground truth."""
    categories = group_order([], list(features.category.dropna()), category_levels(features))
    return {
        "key": features.key.tolist(), "feature": features.feature.astype(int).tolist(),
        "source": features.source.tolist(), "concept": [clean(c) for c in features.concept],
        "category": [clean(c) for c in features.category],
        "aligned": features.aligned.fillna(False).astype(bool).tolist(),
        "labels": label_list, "metrics": headlines, "default_metric": default_metric(headlines),
        "categories": categories, "no_truth": list(no_truth), "page_size": page_size,
    }


def label_columns(rows: pd.DataFrame, features: pd.DataFrame, label: str, headlines: list[str]) -> dict:
    """One label's explanation and headline scores, aligned with the gallery index (None where the
    label has no row for a feature, or the feature is dead)."""
    keys = list(zip(features.source, features.feature))
    part = rows[rows.label == label].set_index(["source", "feature"]).reindex(keys)
    return {"label": label, "explanation": [clean(e) for e in part.explanation],
            "scores": {col: [clean(v) for v in part[col]] for col in headlines if col in part.columns}}


def feature_records(rows: pd.DataFrame, features: pd.DataFrame, score_cols: list[str],
                    extras: dict[tuple[str, int], dict], no_truth: list[str] = ()) -> dict[str, dict]:
    """The feature pages' data, by shard name: `columns` (the score columns, named once per shard)
    and `features`, per feature its ground truth, its neighbours in the gallery's order (`prev`,
    `next`), each label's explanation, LM, coefficient and scores (a list in `columns`' order), and
    `extras` (top-image captions and activations) under the feature's (source, feature). `truth` is
    false for the features of the sources in `no_truth`."""
    grouped = {key: part for key, part in rows.groupby(["source", "feature"], sort=False)}
    keys = features.key.tolist()
    out: dict[str, list[dict]] = {}
    for i, f in enumerate(features.to_dict("records")):
        part = grouped[f["source"], f["feature"]]
        record = {k: clean(f[k]) for k in ("key", "source", "feature", *TRUTH)}
        record["truth"] = f["source"] not in no_truth
        record["prev"] = keys[i - 1] if i else None
        record["next"] = keys[i + 1] if i + 1 < len(keys) else None
        record["explanations"] = [
            {"label": r["label"], "lm": r["lm"], "method": r["method"], "explanation": clean(r["explanation"]),
             "multiplier": clean(r["multiplier"]), "coefficient": clean(r["coefficient"]),
             "scores": [clean(r.get(c)) for c in score_cols]}
            for r in part.to_dict("records")]
        record.update(extras.get((f["source"], f["feature"]), {}))
        out.setdefault(shard_name(f["source"], int(f["feature"])), []).append(record)
    return {name: {"columns": score_cols, "features": records} for name, records in out.items()}
