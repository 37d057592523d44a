"""The README's headline findings, tested on every source whose rows a leaderboard holds: does a
verdict drawn on the shipped world hold on worlds trained from other seeds?

Each finding is a directional comparison of per-feature scores, "a scores higher than b" on one
metric, tested two ways: the leaderboard's (and the paper's) one-sided Mann–Whitney U
(`benchmark.stats.greater`), and the paired one-sided Wilcoxon signed-rank test on the per-feature
differences (`benchmark.stats.paired_greater`: both sides score the same features, so the paired
test sees what the unpaired one drowns in the spread between features). Its direction is the one the
first source (the shipped world) shows, so the question on the others is whether the same verdict
comes out again, and with what p-value. A method ordering per metric is compared as a whole: the
four methods sorted by their mean.

    python -m benchmark findings leaderboards leaderboards/seeds leaderboards/seed [--json]

Rows scored under another protocol than the project's count as a source of their own, named
`<source> [<protocol>]`: the same verdicts, tested on the same features scored the paper's way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.stats import ALPHA, greater, paired_greater

METRICS = ("detection_auroc", "simulation_r", "clip_score", "generation_auroc", "localization_iou", "oracle")
METHODS = ("caption-top1", "steering", "hybrid", "topk")
CONTROLS = ("random-direction", "permuted", "no-steer", "random-words")
FIDELITY = ("detection_auroc", "simulation_r", "generation_auroc", "localization_iou")


@dataclass(frozen=True)
class Comparison:
    """`a` against `b` on `metric` (each method on its own LM size)."""

    name: str
    metric: str
    a: tuple[str, str]
    b: tuple[str, str]


def comparisons(lms: list[str]) -> list[Comparison]:
    """Steering and hybrid against top-k on the largest LM, growth from the smallest to the largest LM
    (steering, top-k, hybrid), per metric."""
    large, small = lms[-1], lms[0]
    out = []
    for metric in METRICS:
        out.append(Comparison("steering vs top-k", metric, ("steering", large), ("topk", large)))
        out.append(Comparison("hybrid vs top-k", metric, ("hybrid", large), ("topk", large)))
        for method in ("steering", "topk", "hybrid"):
            out.append(Comparison(f"{method}: {large} LM vs {small} LM", metric, (method, large), (method, small)))
    return out


def _scores(rows: pd.DataFrame, method: str, lm: str, metric: str) -> np.ndarray:
    return rows[(rows.method == method) & (rows.lm == lm)][metric].to_numpy(np.float64)


def _paired(rows: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], metric: str) -> float:
    """The paired p of "a > b": feature f of one side against feature f of the other."""
    by_feature = [rows[(rows.method == m) & (rows.lm == lm)].set_index("feature")[metric] for m, lm in (a, b)]
    both = by_feature[0].index.intersection(by_feature[1].index)
    return paired_greater(by_feature[0].loc[both].to_numpy(), by_feature[1].loc[both].to_numpy())[1]


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def table(rows_by_source: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per finding: its verdict on the first source, then per source the p-values of that
    verdict (one-sided, in the first source's direction; above 0.5 the other source leans the other
    way), Mann–Whitney (column: the source) and paired (`<source> paired`), and on how many sources
    each is significant (p < 0.05)."""
    sources = list(rows_by_source)
    first = rows_by_source[sources[0]]
    lms = [lm for lm in ("small", "medium", "large") if lm in set(first.lm)] or sorted(set(first.lm))
    out = []
    for c in comparisons(lms):
        a, b = _scores(first, *c.a, c.metric), _scores(first, *c.b, c.metric)
        if not (np.isfinite(a).any() and np.isfinite(b).any()):
            continue
        high, low = (c.a, c.b) if _mean(a) >= _mean(b) else (c.b, c.a)
        record = {"finding": c.name, "metric": c.metric,
                  "verdict": f"{high[0]} ({high[1]}) > {low[0]} ({low[1]})"}
        for source, rows in rows_by_source.items():
            record[source] = greater(_scores(rows, *high, c.metric), _scores(rows, *low, c.metric))[1]
            record[f"{source} paired"] = _paired(rows, high, low, c.metric)
        out.append(record)
    controls = {"finding": "methods vs controls", "metric": "fidelity (4)",
                "verdict": f"each of {len(METHODS)} methods > each of {len(CONTROLS)} controls (weakest p)"}
    for source, rows in rows_by_source.items():  # the weakest of all method-control comparisons
        tests = control_comparisons(rows, lms[-1])
        controls[source], controls[f"{source} paired"] = float(tests.p.max()), float(tests.p_paired.max())
    out.append(controls)
    result = pd.DataFrame(out)
    result["significant on"] = (result[sources] < ALPHA).sum(axis=1)
    result["significant on, paired"] = (result[[f"{s} paired" for s in sources]] < ALPHA).sum(axis=1)
    return result


def control_comparisons(rows: pd.DataFrame, lm: str) -> pd.DataFrame:
    """Every (method, control, fidelity metric) on one LM: the p-values of "method > control",
    Mann–Whitney (`p`) and paired (`p_paired`)."""
    return pd.DataFrame([{"method": m, "control": c, "metric": metric,
                          "p": greater(_scores(rows, m, lm, metric), _scores(rows, c, lm, metric))[1],
                          "p_paired": _paired(rows, (m, lm), (c, lm), metric)}
                         for m in METHODS for c in CONTROLS for metric in FIDELITY])


def orderings(rows_by_source: dict[str, pd.DataFrame], lm: str = "large") -> pd.DataFrame:
    """Per metric and source, the methods in order of their mean (best first), and whether the
    order is the same on every source."""
    out = []
    for metric in METRICS:
        record = {"metric": metric}
        for source, rows in rows_by_source.items():
            means = {m: _mean(_scores(rows, m, lm, metric)) for m in METHODS}
            record[source] = " > ".join(sorted(means, key=lambda m: -means[m]))
        record["same on all"] = len({record[s] for s in rows_by_source}) == 1
        out.append(record)
    return pd.DataFrame(out)


def markdown(findings: pd.DataFrame, order: pd.DataFrame) -> str:
    """Both tables in Markdown, p-values to two significant digits (Mann–Whitney / paired)."""
    sources = list(order.columns[1:-1])
    lines = ["| finding | metric | verdict on " + sources[0] + " | "
             + " | ".join(f"p, {s} (MW / paired)" for s in sources) + " | significant on (MW / paired) |",
             "|" + " --- |" * (4 + len(sources))]
    for r in findings.to_dict("records"):
        lines.append(f"| {r['finding']} | {r['metric']} | {r['verdict']} | "
                     + " | ".join(f"{r[s]:.2g} / {r[f'{s} paired']:.2g}" for s in sources)
                     + f" | {r['significant on']} / {r['significant on, paired']} of {len(sources)} |")
    lines += ["", "| metric | " + " | ".join(sources) + " | same on all |", "|" + " --- |" * (2 + len(sources))]
    for r in order.to_dict("records"):
        lines.append(f"| {r['metric']} | " + " | ".join(r[s] for s in sources)
                     + f" | {'yes' if r['same on all'] else '**no**'} |")
    return "\n".join(lines)
