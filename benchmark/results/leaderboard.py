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
  (`p_holm`, `p_paired_holm`); then whether the difference is beyond noise: `diff` (a's mean paired
  advantage, its bootstrap CI `diff_ci_low`/`diff_ci_high`), `mrd` (the (source, LM, metric)'s minimum
  reliable difference: the larger of the reseed spread, measured on the `n_seeds` worlds of the same
  preset and protocol found among the rows and the seed directory's, and the typical CI half-width,
  `benchmark.scoring.stats.min_reliable_difference`) and `beyond_noise` (`diff` above `mrd` and its CI above 0).
Where the rows hold the best-constant-label control (`constant-label[<metric>]`, one per metric, chosen
on validation features by that metric), `main.csv` gets `<headline>_beats_constant` per headline: whether
the method beats that metric's constant label (paired test after Holm, and beyond noise); a False
flags a method no better than one label given to every feature.
The seed directory (`--seeds`, default `<dir>/seeds` when it has rows) is read, never written.
Every write happens under an exclusive lock on `leaderboards/.lock` and replaces files atomically,
so concurrent writers serialise and a reader never sees a torn file. Output is deterministic.
"""
from __future__ import annotations

import json
import re
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.cache import write_atomic
from benchmark.registry import UsageError
from benchmark.results.board_rows import (
    COST_COLUMNS,
    KEYS,
    add_runs,
    load_rows,
    locked,
)
from benchmark.scoring.stats import (
    ALPHA,
    greater,
    holm,
    mean_ci,
    min_reliable_difference,
    paired_difference,
    paired_greater,
    pooled_ci,
    reseed_spread,
)

"""What rows of one (source, LM) must share: the models' content and the protocol that scored them."""
"""What one feature's explanation cost, its share of its method batch: wall seconds of the explaining
step, prompt tokens sent to the explainer (image tokens included), answer tokens generated, images
shown. Optional in rows; NaN where unknown (explanations made elsewhere, rows older than costs)."""
COST_MEDIANS = tuple(f"{c}_median" for c in COST_COLUMNS)
"""The main table's cost columns, in `COST_COLUMNS`' order."""
CONSTANT_METHOD = "constant-label"
"""The best-constant-label control: the run expands it into one method per metric (`constant_name`)."""
TABLE_FORMAT = "%.4g"
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


def pairwise_table(rows: pd.DataFrame, headlines: list[str], higher: dict[str, bool] | None = None,
                   seed_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every ordered pair of methods per (source, LM, metric): "a scores better than b" (`higher`:
    headline -> higher is better; default: the registered metrics' declarations) by the paper's
    Mann–Whitney U (`u`, `p_value`, `a_better`) and by a paired test, Wilcoxon signed-rank on the
    per-feature differences (`p_paired`); each with Holm's correction across the (source, LM,
    metric)'s comparisons (`p_holm`, `p_paired_holm`); then the paired difference with its bootstrap CI,
    the minimum reliable difference and whether the difference is beyond it (`noise_columns`), the
    reseed spread read from `rows` and `seed_rows` (other worlds' rows; None: `rows` alone)."""
    higher = directions(headlines) if higher is None else higher
    spreads = seed_spreads(rows if seed_rows is None else combine_seeds(rows, seed_rows), headlines, higher)
    out = []
    for (source, lm), group in rows.groupby(["source", "lm"], sort=True):  # one source_id each (`load_rows`)
        scores = group.pivot_table(index="feature", columns="method", values=headlines, aggfunc="first", dropna=False)
        methods = sorted(set(group.method))
        seeds_key = (preset(source), str(group.protocol.iloc[0]) if "protocol" in group else "", lm)
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
                table = noise_columns(table, scores[col] * sign, *spreads.get((*seeds_key, col), (float("nan"), 1)))
            out.append(table)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def noise_floor(rows: pd.DataFrame, headlines: list[str], higher: dict[str, bool] | None = None,
                seed_rows: pd.DataFrame | None = None) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(source, LM, metric) -> (minimum reliable difference, seeds it rests on): what `pairwise_table`'s
    `mrd` and `n_seeds` columns hold, without the tests (for verdicts drawn elsewhere, `benchmark.results.findings`)."""
    higher = directions(headlines) if higher is None else higher
    spreads = seed_spreads(rows if seed_rows is None else combine_seeds(rows, seed_rows), headlines, higher)
    out = {}
    for (source, lm), group in rows.groupby(["source", "lm"], sort=True):
        scores = group.pivot_table(index="feature", columns="method", values=headlines, aggfunc="first", dropna=False)
        methods = sorted(set(group.method))
        pairs = pd.DataFrame([(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]],
                             columns=["method_a", "method_b"])
        seeds_key = (preset(source), str(group.protocol.iloc[0]) if "protocol" in group else "", lm)
        for col in headlines:
            if len(pairs):
                sign = 1.0 if higher.get(col, True) else -1.0
                table = noise_columns(pairs.copy(), scores[col] * sign,
                                      *spreads.get((*seeds_key, col), (float("nan"), 1)))
                out[source, lm, col] = (float(table.mrd.iloc[0]), int(table.n_seeds.iloc[0]))
    return out


def noise_columns(table: pd.DataFrame, signed_FM: pd.DataFrame, spread: float, n_seeds: int) -> pd.DataFrame:
    """`table` (one (source, LM, metric)'s ordered pairs) with `diff`, `diff_ci_low`, `diff_ci_high` (a's
    paired advantage over b, better-is-positive `signed_FM`: feature x method), `mrd`, `n_seeds` and
    `beyond_noise`. Each unordered pair is bootstrapped once; (b, a) is its mirror image."""
    cis = {}
    for a, b in zip(table.method_a, table.method_b):
        if (b, a) in cis:
            m, low, high = cis[b, a]
            cis[a, b] = (-m, -high, -low)
        else:
            cis[a, b] = paired_difference(signed_FM[a].to_numpy(), signed_FM[b].to_numpy())
    diff = np.array([cis[a, b] for a, b in zip(table.method_a, table.method_b)], np.float64).reshape(-1, 3)
    table["diff"], table["diff_ci_low"], table["diff_ci_high"] = diff[:, 0], diff[:, 1], diff[:, 2]
    table["mrd"] = min_reliable_difference(spread, (diff[:, 2] - diff[:, 1]) / 2)
    table["n_seeds"] = n_seeds
    table["beyond_noise"] = (table["diff"] > table.mrd) & (table.diff_ci_low > 0)
    return table


def preset(source: str) -> str:
    """A source name less its world seed (`default@seed1` -> `default`; `default@1+random-sae-0` ->
    `default+random-sae-0`, so a random SAE is never a reseed of a trained one): sources with one preset
    and protocol are reseeds of one another."""
    return re.sub(r"@[^+]*", "", source)


def combine_seeds(rows: pd.DataFrame, seed_rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` and the seed rows of sources `rows` does not already hold (a seed directory that is the
    board itself adds nothing)."""
    return pd.concat([rows, seed_rows[~seed_rows.source.isin(set(rows.source))]], ignore_index=True)


def seed_spreads(rows: pd.DataFrame, headlines: list[str], higher: dict[str, bool]) -> dict[tuple, tuple[float, int]]:
    """(preset, protocol, LM, metric) -> (reseed spread, seeds): per source of that preset and protocol,
    each method pair's mean paired difference, then `benchmark.scoring.stats.reseed_spread` across the sources."""
    out = {}
    protocol = rows.protocol.astype(str) if "protocol" in rows else pd.Series("", rows.index)
    for (name, proto, lm), group in rows.groupby([rows.source.map(preset), protocol, rows.lm], sort=True):
        sources = sorted(set(group.source))
        methods = sorted(set(group.method))
        pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
        for col in headlines:
            d_SP = np.full((len(sources), len(pairs)), np.nan)
            for s, source in enumerate(sources):
                scores = group[group.source == source].pivot_table(index="feature", columns="method", values=col,
                                                                   aggfunc="first", dropna=False)
                for p, (a, b) in enumerate(pairs):
                    if a in scores and b in scores:
                        d_SP[s, p] = _mean_paired(scores[a].to_numpy(), scores[b].to_numpy())
            seeded = int((np.isfinite(d_SP).any(axis=1)).sum())
            out[name, proto, lm, col] = (reseed_spread(d_SP), max(seeded, 1))
    return out


def _mean_paired(a: np.ndarray, b: np.ndarray) -> float:
    """The mean of `a - b` where both are finite; NaN where nothing is."""
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.mean(a[both] - b[both])) if both.any() else float("nan")


def constant_name(metric: str) -> str:
    """The rows' method name of the constant label chosen by `metric` (a metric's registered name)."""
    return f"{CONSTANT_METHOD}[{metric}]"


def constant_flags(main: pd.DataFrame, pairwise: pd.DataFrame) -> pd.DataFrame:
    """`main` with `<headline>_beats_constant` per headline whose constant-label control the rows hold:
    whether each method beats it (paired one-sided test after Holm, and beyond noise); empty for the
    constant labels themselves and where that (source, LM) has no such control. Unchanged without any."""
    from metrics import all_metrics

    if pairwise.empty or not main.method.str.startswith(f"{CONSTANT_METHOD}[").any():
        return main
    verdict = pairwise.assign(beats=(pairwise.p_paired_holm < ALPHA) & pairwise.beyond_noise).set_index(
        ["source", "lm", "metric", "method_a", "method_b"]).beats
    main = main.copy()
    for m in all_metrics():
        if m.headline not in main.columns:
            continue
        control = constant_name(m.name)
        flags = [verdict.get((r.source, r.lm, m.headline, r.method, control), None)
                 if not r.method.startswith(f"{CONSTANT_METHOD}[") else None for r in main.itertuples()]
        if any(f is not None for f in flags):
            main[f"{m.headline}{BEATS_CONSTANT}"] = pd.Series([None if f is None else bool(f) for f in flags],
                                                             index=main.index, dtype=object)
    return main


def regenerate(dpath: Path, add: list[Path] = (), replace: bool = False,
               seeds: list[Path] | None = None) -> dict[str, pd.DataFrame]:
    """Adds runs (if any; `replace`: dropping rows of another source identity), then rewrites the three
    tables from the rows; all under the lock. `seeds`: leaderboard directories whose rows are other
    worlds' seeds, read for the reseed spread only (None: `default_seeds(dpath)`)."""
    for run_dpath in add:
        if not Path(run_dpath).is_dir():
            raise UsageError(f"--add {run_dpath}: no such run directory")
    seeds = default_seeds(dpath) if seeds is None else [Path(d) for d in seeds]
    with locked(dpath):
        add_runs(dpath, [Path(p) for p in add], replace)
        rows = load_rows(dpath)
        seed_rows = pd.concat([load_rows(d) for d in seeds], ignore_index=True) if seeds else None
        headlines = headline_columns(rows)
        pairwise = pairwise_table(rows, headlines, seed_rows=seed_rows)
        tables = {"main": constant_flags(main_table(rows, headlines), pairwise),
                  "per_category": category_table(rows, headlines), "pairwise": pairwise}
        for name, table in tables.items():
            write_atomic(dpath / f"{name}.csv", table.to_csv(index=False, float_format=TABLE_FORMAT, lineterminator="\n"))
    return tables


def default_seeds(dpath: Path) -> list[Path]:
    """`<dpath>/seeds` when it holds score rows (the project's layout: leaderboards/seeds beside the
    shipped world's rows), else none: the spread then comes from the board's own worlds."""
    seeds = Path(dpath) / "seeds"
    return [seeds] if any((seeds / "rows").glob("*.csv.gz")) else []


BEATS_CONSTANT = "_beats_constant"
"""The suffix of `main.csv`'s flag columns: whether a method beats its metric's constant label."""


def markdown(main: pd.DataFrame) -> str:
    """The main table's means as a Markdown table (for the README), and the median seconds per
    feature where the table has costs."""
    headlines = [c for c in main.columns if c not in (*KEYS, "protocol", "n_features", *COST_MEDIANS)
                 and not c.endswith(("_ci_low", "_ci_high", BEATS_CONSTANT))]
    beats = [c for c in main.columns if c.endswith(BEATS_CONSTANT)]
    seconds = [c for c in ("cost_seconds_median",) if c in main.columns]
    names = [*KEYS, "n", *headlines, *(["s / feature"] if seconds else []), *(["beats the constant label on"] if beats else [])]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    for r in main.itertuples(index=False):
        cells = [r.source, r.lm, r.method, str(r.n_features)]
        cells += [f"{getattr(r, c):.3f}" if not np.isnan(getattr(r, c)) else "–" for c in headlines]
        cells += [f"{getattr(r, c):.3g}" if not np.isnan(getattr(r, c)) else "–" for c in seconds]
        if beats:  # the headlines a method fails to beat its constant label on are the news
            held = [c.removesuffix(BEATS_CONSTANT) for c in beats if getattr(r, c) is True or getattr(r, c) == True]  # noqa: E712
            cells.append(", ".join(held) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
