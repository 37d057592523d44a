"""What each metric can tell apart, measured on a leaderboard's rows, and the board's README.

Two sanity numbers per metric, for one (source, LM) of a leaderboard directory:
- **separation** (`separations`): for each of top-k, steering and hybrid, how well the metric tells the
  trained SAE's features from a random SAE's (rows of `<source>+random-sae-<seed>`, `--sae
  random:<seed>`): `benchmark.results.findings.separation`'s AUROC of per-feature scores, trained positive, with
  its bootstrap CI and the difference of means (scores signed so that better is higher);
- **margin over the best constant label** (`constant_margin`): the best real method's mean minus the
  mean of the constant label chosen by that metric (`constant-label[<metric>]`), better-is-positive, and
  which method. Real methods: every method in the rows but the controls (`benchmark.results.findings.CONTROLS`),
  the oracle and the constant labels.
Where the rows lack the random SAE or the constant label, the numbers are None and `notes` says so:
nothing is invented. `verdict` turns them into one phrase per metric by fixed rules (the thresholds
below, named once, never tuned to a result); `readme` writes them, with the numbers and each method's means
(`means_lines`), as `leaderboards/README.md` (`python -m benchmark leaderboard --readme`), deterministically.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CHANCE = 0.5
"""The separation AUROC of a metric that cannot tell a trained SAE's features from a random SAE's."""
SEPARATION_FLOOR = 0.6
"""Below this top-k separation AUROC (or with 0.5 inside its CI) a metric does not rank SAEs."""
MARGIN_FLOOR = 0.0
"""At or below this margin of the best method over the best constant label, a metric is beaten by it."""
JUDGED_METHOD = "topk"
"""The method whose separation decides `verdict`: the plain reading of an SAE feature, no steering."""
NOT_METHODS = ("oracle",)
"""Besides the controls (`benchmark.results.findings.CONTROLS`) and constant labels: rows that explain no feature
the way a method does (the oracle reads the ground truth)."""

DOES_NOT_RANK = "scores explanation fidelity to any direction; does not rank SAEs"
BEATEN = "beaten by a constant label"
README_NAME = "README.md"


def board_rows(rows: pd.DataFrame, source: str, lm: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(the trained source's rows on `lm`, {random SAE source: its rows on `lm`}) from a board's rows."""
    from benchmark.config.models import trained_source_of

    on_lm = rows[rows.lm == lm]
    randoms = {name: part for name, part in on_lm.groupby("source", sort=True) if trained_source_of(name) == source}
    return on_lm[on_lm.source == source], randoms


def separations(trained: pd.DataFrame, random: pd.DataFrame, column: str, higher_is_better: bool = True
                ) -> dict[str, dict]:
    """Per method of `benchmark.results.findings.SEPARATED`: `separation` of the trained rows' `column` from the
    random SAE's rows' (signed so that better is higher), with both means (unsigned); None for a method
    either side lacks or scores NaN throughout."""
    from benchmark.results.findings import SEPARATED, separation

    sign = 1.0 if higher_is_better else -1.0
    out = {}
    for method in SEPARATED:
        a = _column(trained, method, column)
        b = _column(random, method, column)
        if not (np.isfinite(a).any() and np.isfinite(b).any()):
            out[method] = None
            continue
        s = separation(sign * a, sign * b)
        out[method] = {"auroc": _num(s["auroc"]), "ci_low": _num(s["low"]), "ci_high": _num(s["high"]),
                       "difference": _num(sign * s["difference"]), "trained_mean": _num(np.nanmean(a)),
                       "random_mean": _num(np.nanmean(b)), "n_trained": int(s["n_trained"]),
                       "n_random": int(s["n_random"])}
    return out


def constant_margin(rows: pd.DataFrame, metric: str, column: str, higher_is_better: bool = True) -> dict | None:
    """The best real method's mean of `column` minus the mean of the constant label chosen by `metric`
    (a registered metric's name), better-is-positive: {margin, method, method_mean, constant_mean, label};
    None where the rows hold no such constant label or no real method scores it."""
    from benchmark.results.findings import CONTROLS
    from benchmark.results.leaderboard import CONSTANT_METHOD, constant_name

    control = rows[rows.method == constant_name(metric)]
    constant_mean = _mean(control[column]) if column in rows else float("nan")
    methods = sorted(m for m in set(rows.method)
                     if m not in (*CONTROLS, *NOT_METHODS) and not m.startswith(f"{CONSTANT_METHOD}["))
    means = {m: _mean(rows[rows.method == m][column]) for m in methods} if column in rows else {}
    means = {m: v for m, v in means.items() if np.isfinite(v)}
    if not np.isfinite(constant_mean) or not means:
        return None
    sign = 1.0 if higher_is_better else -1.0
    best = max(means, key=lambda m: (sign * means[m], m))  # a tie: the later name, so stable across runs
    labels = control.explanation.dropna().astype(str).unique() if "explanation" in control else []
    return {"margin": _num(sign * (means[best] - constant_mean)), "method": best, "method_mean": _num(means[best]),
            "constant_mean": _num(constant_mean), "label": str(labels[0]) if len(labels) else None}


def sanity(rows: pd.DataFrame, source: str, lm: str, metrics: list | None = None) -> dict[str, dict]:
    """Per metric (registered name; default every registered metric whose headline the rows hold): its
    `column`, `separation` per method (None where the board has no random SAE of `source`), the random
    SAE it was measured against, `constant` (`constant_margin`, or None) and `notes` (why a number is
    missing). With several random SAEs, the first by name."""
    from metrics import all_metrics

    metrics = [m for m in (metrics or all_metrics()) if m.headline in rows.columns]
    trained, randoms = board_rows(rows, source, lm)
    random_name = next(iter(randoms), None)
    out = {}
    for m in metrics:
        notes = []
        if trained.empty:
            notes.append(f"the board has no rows of {source} on the {lm} LM")
        if random_name is None:
            separation = None
            notes.append(f"no random-SAE rows ({source}+random-sae-<seed>) on the {lm} LM: separation not measured")
        else:
            separation = separations(trained, randoms[random_name], m.headline, m.higher_is_better)
            missing = [k for k, v in separation.items() if v is None]
            if missing:
                notes.append(f"{random_name} lacks {', '.join(missing)} scores on {m.headline}: separation not "
                             f"measured for {'it' if len(missing) == 1 else 'them'}")
        constant = constant_margin(trained, m.name, m.headline, m.higher_is_better) if len(trained) else None
        if constant is None and len(trained):
            from benchmark.results.leaderboard import constant_name

            notes.append(f"no {constant_name(m.name)} rows (or no real method) on the {lm} LM: margin not measured")
        out[m.name] = {"column": m.headline, "random_sae": random_name, "separation": separation,
                       "constant": constant, "notes": notes}
    return out


def verdict(entry: dict) -> str:
    """What a metric measures, by fixed rules on `sanity`'s entry: "beaten by a constant label" where the
    best method's margin over it is <= `MARGIN_FLOOR`; `DOES_NOT_RANK` where the top-k separation AUROC is
    below `SEPARATION_FLOOR` or its CI holds `CHANCE`; else "tells trained features from random ones
    (AUROC x)". Both failures can hold at once; an unmeasured number says so instead."""
    parts = []
    constant = entry.get("constant")
    if constant is None:
        parts.append("margin over a constant label not measured")
    elif constant["margin"] is not None and constant["margin"] <= MARGIN_FLOOR:
        parts.append(f"{BEATEN} ({constant['label']!r})" if constant.get("label") else BEATEN)
    s = (entry.get("separation") or {}).get(JUDGED_METHOD)
    if s is None or s["auroc"] is None:
        parts.append("trained vs random SAE not measured")
    elif s["auroc"] < SEPARATION_FLOOR or (s["ci_low"] is not None and s["ci_high"] is not None
                                            and s["ci_low"] <= CHANCE <= s["ci_high"]):
        parts.append(DOES_NOT_RANK)
    else:
        parts.append(f"tells trained features from random ones (AUROC {s['auroc']:.2f})")
    return "; ".join(parts)


def readme(rows: pd.DataFrame, agreement: dict[str, dict] | None = None, board: str = "leaderboards") -> str:
    """The board's README: the rules, then per trained source (one with rows of its own, not a random
    SAE) and LM (large first) two tables: `means_lines` (each method's headline means, as `main.csv`
    computes them) and `sanity_lines` (each metric column's verdict with its numbers; with `agreement`,
    `validate-metrics --json`'s ground-truth agreement beside it). Deterministic: the same rows give the
    same bytes."""
    from benchmark.config.models import trained_source_of
    from metrics import all_metrics

    lines = _intro_lines(board)
    metrics = [m for m in all_metrics() if m.headline in rows.columns]
    sources = sorted(s for s in set(rows.source) if trained_source_of(s) is None)
    order = {"large": 0, "medium": 1, "small": 2}
    for source in sources:
        lms = sorted(set(rows[rows.source == source].lm), key=lambda lm: (order.get(lm, 3), lm))
        for lm in lms:
            lines += ["", f"## {source}, {lm} LM", ""]
            lines += means_lines(rows, source, lm, metrics)
            lines += [""] + sanity_lines(rows, source, lm, metrics, agreement)
    return "\n".join(lines) + "\n"


def _intro_lines(board: str) -> list[str]:
    """The README's head: where it comes from, what the two tables of each section hold, the verdict's rules."""
    from benchmark.results.findings import SEPARATED

    return ["# The leaderboard: each method's means, and what each column measures", "",
            f"Generated by `python -m benchmark leaderboard --dir {board} --readme` from `{board}/rows/`; do not "
            f"edit by hand.", "",
            "Each section is one (source, LM). Its first table gives each method's mean of every metric's headline "
            "column over the features that method scored, computed from the rows as `main.csv`'s means are "
            f"(`{board}/main.csv` adds 95% bootstrap CIs, cost medians and whether each method beats the constant "
            "label; `pairwise.csv` the tests between methods).", "",
            "Each metric column is read in the light of two sanity checks, measured on these rows:", "",
            "- **trained vs random SAE**: the AUROC with which the metric's per-feature scores tell the trained "
            "SAE's features from those of a random SAE of the same shape (`--sae random:<seed>`), for "
            f"{', '.join(SEPARATED)} (0.5: not at all), with a 95% bootstrap CI;",
            "- **margin over the best constant label**: the best real method's mean minus the mean of the one "
            "label, chosen per metric on validation features, given to every feature (`constant-label[<metric>]`).",
            "", "The verdict follows fixed rules (`benchmark.results.board_readme`), never tuned to a result:", "",
            f"- margin <= {MARGIN_FLOOR:g}: \"{BEATEN}\";",
            f"- {JUDGED_METHOD} separation AUROC < {SEPARATION_FLOOR:g}, or its CI holds {CHANCE:g}: "
            f"\"{DOES_NOT_RANK}\";",
            "- else: \"tells trained features from random ones (AUROC x)\".",
            "", "Where the rows lack the random SAE or the constant label, the number reads \"–\" and the verdict "
            "says it was not measured."]


def means_lines(rows: pd.DataFrame, source: str, lm: str, metrics: list) -> list[str]:
    """A Markdown table of `source`'s methods on `lm` (by name), then those of its random SAEs: the features
    with a score (`n`), each headline's mean of its non-NaN values and each pooled statistic the rows keep
    samples for (`<headline>_pooled`), and the median prompt tokens a feature where the rows record costs."""
    from benchmark.results.leaderboard import pooled_metrics

    trained, randoms = board_rows(rows, source, lm)
    headlines = [m.headline for m in metrics]
    pooled = [m for m in pooled_metrics(rows) if m.headline in headlines]
    tokens = "cost_prompt_tokens" in rows.columns
    head = ["method", "n", *(f"`{h}`" for h in headlines), *(f"`{m.headline}_pooled`" for m in pooled),
            *(["prompt tokens (median)"] if tokens else [])]
    lines = ["### Means over features", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    groups = [(method, part) for method, part in trained.groupby("method", sort=True)]
    groups += [(f"{method} on {name}", part) for name, rand in sorted(randoms.items())
               for method, part in rand.groupby("method", sort=True)]
    for label, part in groups:
        cells = [label, str(int(part[headlines].notna().any(axis=1).sum()))]
        cells += [_fmt(_mean(part[h])) for h in headlines]
        cells += [_fmt(_pooled(part, m)) for m in pooled]
        if tokens:
            cells.append(_fmt(_median(part.cost_prompt_tokens), ".3g"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sanity_lines(rows: pd.DataFrame, source: str, lm: str, metrics: list,
                 agreement: dict[str, dict] | None = None) -> list[str]:
    """A Markdown table of every metric column of `source` on `lm`: the verdict, the separation AUROC [95% CI]
    for top-k, steering and hybrid, the margin over the best constant label (method, label) and, with
    `agreement` (metric name -> pairwise_auroc, spearman_oracle), the agreement with ground truth."""
    from benchmark.results.findings import SEPARATED

    report = sanity(rows, source, lm, metrics)
    randoms = sorted({e["random_sae"] for e in report.values() if e["random_sae"]})
    lines = ["### What each column measures", "",
             f"Random SAE: {', '.join(randoms) if randoms else 'none in the rows'}.", ""]
    head = ["column", "what it measures", *(f"{m} vs random SAE" for m in SEPARATED), "best method − constant label"]
    if agreement is not None:
        head += ["ground truth: pairwise AUROC / Spearman with oracle"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in metrics:
        entry = report[m.name]
        cells = [f"`{m.headline}`", verdict(entry)]
        cells += [_separation_cell((entry["separation"] or {}).get(method)) for method in SEPARATED]
        cells.append(_constant_cell(entry["constant"]))
        if agreement is not None:
            a = agreement.get(m.name) or {}
            cells.append(f"{_fmt(a.get('pairwise_auroc'))} / {_fmt(a.get('spearman_oracle'))}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_readme(dpath: Path, agreement: dict[str, dict] | None = None) -> Path:
    """Writes `<dpath>/README.md` from `<dpath>/rows` (nothing else is written) and returns its path."""
    from benchmark.cache import write_atomic
    from benchmark.results.board_rows import load_rows, locked

    dpath = Path(dpath)
    fpath = dpath / README_NAME
    with locked(dpath):  # rows read whole, as `regenerate` leaves them
        write_atomic(fpath, readme(load_rows(dpath), agreement, board=dpath.as_posix()).encode())
    return fpath


def _separation_cell(s: dict | None) -> str:
    if s is None or s["auroc"] is None:
        return "–"
    ci = f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]" if s["ci_low"] is not None and s["ci_high"] is not None else ""
    return f"{s['auroc']:.2f}{ci}"


def _constant_cell(c: dict | None) -> str:
    if c is None or c["margin"] is None:
        return "–"
    label = f", {c['label']!r}" if c.get("label") else ""
    return f"{c['margin']:+.3f} ({c['method']}{label})"


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None or not np.isfinite(x) else format(x, spec)


def _column(rows: pd.DataFrame, method: str, column: str) -> np.ndarray:
    if column not in rows:
        return np.array([], np.float64)
    part = rows[rows.method == method]
    if "feature" in part:  # feature order, so the bootstrap draws the same however the rows were read
        part = part.sort_values("feature", kind="stable")
    return part[column].to_numpy(np.float64)


def _mean(values: pd.Series) -> float:
    values = values.to_numpy(np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _median(values: pd.Series) -> float:
    from benchmark.results.leaderboard import finite_median

    return finite_median(values.to_numpy(np.float64))


def _pooled(rows: pd.DataFrame, metric) -> float:
    """`metric`'s pooled statistic over the rows' samples (as `main.csv`'s `<headline>_pooled`); NaN without."""
    import json

    if metric.samples_column not in rows:
        return float("nan")
    samples = [tuple(map(np.asarray, json.loads(v))) for v in rows[metric.samples_column] if isinstance(v, str) and v]
    return float(metric.pooled(samples)) if samples else float("nan")


def _num(x: float) -> float | None:
    """A JSON-safe number: None for NaN, else rounded to 4 places (the tables' precision)."""
    return None if x is None or not np.isfinite(x) else round(float(x), 4)
