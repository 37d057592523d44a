"""The README's headline findings, tested on every source whose rows a leaderboard holds: does a
verdict drawn on the shipped world hold on worlds trained from other seeds?

Each finding is a directional comparison of per-feature scores, "a scores higher than b" on one
metric, tested two ways: the leaderboard's (and the paper's) one-sided Mann–Whitney U
(`benchmark.scoring.stats.greater`), and the paired one-sided Wilcoxon signed-rank test on the per-feature
differences (`benchmark.scoring.stats.paired_greater`: both sides score the same features, so the paired
test sees what the unpaired one drowns in the spread between features). Its direction is the one the
first source (the shipped world) shows, so the question on the others is whether the same verdict
comes out again, and with what p-value. A method ordering per metric is compared as a whole: the
four methods sorted by their mean.

    python -m benchmark findings leaderboards leaderboards/seeds leaderboards/seed [--json]

Rows scored under another protocol than the project's count as a source of their own, named
`<source> [<protocol>]`: the same verdicts, tested on the same features scored the paper's way.

A random SAE's rows (`--sae random:<seed>`, source `<source>+random-sae-<seed>`) are a control, not
a source verdicts are tested on: `separation_table` says, per metric and LM, how well each metric
tells the trained SAE's top-k, steering and hybrid features from the random SAE's (AUROC with a
bootstrap CI, and the difference of means).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.config.models import trained_source_of
from benchmark.scoring.stats import ALPHA, RESAMPLES, SEED, greater, holm, paired_difference, paired_greater

FINDING_METRICS = ("detection_auroc", "simulation_r", "clip_score", "generation_auroc", "localization_iou", "oracle")
FINDING_METHODS = ("caption-top1", "steering", "hybrid", "topk")
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
    for metric in FINDING_METRICS:
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
    each is significant (p < 0.05). A verdict is stated only when it survives noise on the first source
    (`verdict_holds`); else it reads "no verdict" with the direction it leans."""
    sources = list(rows_by_source)
    first = rows_by_source[sources[0]]
    lms = [lm for lm in ("small", "medium", "large") if lm in set(first.lm)] or sorted(set(first.lm))
    floor = _noise_floor(rows_by_source)
    out = []
    for c in comparisons(lms):
        a, b = _scores(first, *c.a, c.metric), _scores(first, *c.b, c.metric)
        if not (np.isfinite(a).any() and np.isfinite(b).any()):
            continue
        high, low = (c.a, c.b) if _mean(a) >= _mean(b) else (c.b, c.a)
        record = {"finding": c.name, "metric": c.metric,
                  "verdict": f"{high[0]} ({high[1]}) > {low[0]} ({low[1]})",
                  "difference": _difference(first, high, low, c.metric),
                  "mrd": max(floor.get((sources[0], lm, c.metric), (np.nan,))[0] for lm in {high[1], low[1]})}
        for source, rows in rows_by_source.items():
            record[source] = greater(_scores(rows, *high, c.metric), _scores(rows, *low, c.metric))[1]
            record[f"{source} paired"] = _paired(rows, high, low, c.metric)
        out.append(record)
    out = verdict_holds(out, f"{sources[0]} paired")
    controls = {"finding": "methods vs controls", "metric": "fidelity (4)",
                "verdict": f"each of {len(FINDING_METHODS)} methods > each of {len(CONTROLS)} controls (weakest p)"}
    for source, rows in rows_by_source.items():  # the weakest of all method-control comparisons
        tests = control_comparisons(rows, lms[-1])
        controls[source], controls[f"{source} paired"] = float(tests.p.max()), float(tests.p_paired.max())
    out.append(controls)
    result = pd.DataFrame(out)
    result["significant on"] = (result[sources] < ALPHA).sum(axis=1)
    result["significant on, paired"] = (result[[f"{s} paired" for s in sources]] < ALPHA).sum(axis=1)
    return result


def verdict_holds(records: list[dict], paired: str) -> list[dict]:
    """`records` (findings with `difference`, `mrd` and the first source's paired p in `paired`) with
    `p paired holm` (Holm across these findings) and `beyond noise`; a verdict whose difference does not
    exceed its minimum reliable difference (`benchmark.scoring.stats.min_reliable_difference`; across LMs the
    larger of the two) or whose paired test fails after Holm becomes "no verdict (leans ...)"."""
    adjusted = holm(np.array([r[paired] for r in records], np.float64)) if records else []
    for r, p in zip(records, adjusted):
        r["p paired holm"] = float(p)
        r["beyond noise"] = bool(r["difference"] > r["mrd"] and p < ALPHA)  # a NaN MRD: no verdict
        if not r["beyond noise"]:
            r["verdict"] = f"no verdict (leans {r['verdict']})"
    return records


def _difference(rows: pd.DataFrame, high: tuple[str, str], low: tuple[str, str], metric: str) -> float:
    """The mean paired advantage of `high` over `low`: feature f of one side against feature f of the other."""
    by_feature = [rows[(rows.method == m) & (rows.lm == lm)].set_index("feature")[metric] for m, lm in (high, low)]
    both = by_feature[0].index.intersection(by_feature[1].index)
    return paired_difference(by_feature[0].loc[both].to_numpy(), by_feature[1].loc[both].to_numpy())[0]


def _noise_floor(rows_by_source: dict[str, pd.DataFrame]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """(first source, LM, metric) -> (minimum reliable difference, seeds): the leaderboard's
    (`benchmark.results.leaderboard.noise_floor`), the other sources as its reseeds (those of the same preset and
    protocol count)."""
    from benchmark.results.leaderboard import noise_floor

    sources = list(rows_by_source)
    first = rows_by_source[sources[0]].assign(source=sources[0])
    others = [rows.assign(source=name) for name, rows in list(rows_by_source.items())[1:]]
    metrics = [m for m in FINDING_METRICS if m in first]
    return noise_floor(first, metrics, {m: True for m in metrics},
                       pd.concat(others, ignore_index=True) if others else None)


def control_comparisons(rows: pd.DataFrame, lm: str) -> pd.DataFrame:
    """Every (method, control, fidelity metric) on one LM: the p-values of "method > control",
    Mann–Whitney (`p`) and paired (`p_paired`)."""
    return pd.DataFrame([{"method": m, "control": c, "metric": metric,
                          "p": greater(_scores(rows, m, lm, metric), _scores(rows, c, lm, metric))[1],
                          "p_paired": _paired(rows, (m, lm), (c, lm), metric)}
                         for m in FINDING_METHODS for c in CONTROLS for metric in FIDELITY])


def orderings(rows_by_source: dict[str, pd.DataFrame], lm: str = "large") -> pd.DataFrame:
    """Per metric and source, the methods in order of their mean (best first), and whether the
    order is the same on every source."""
    out = []
    for metric in FINDING_METRICS:
        record = {"metric": metric}
        for source, rows in rows_by_source.items():
            means = {m: _mean(_scores(rows, m, lm, metric)) for m in FINDING_METHODS}
            record[source] = " > ".join(sorted(means, key=lambda m: -means[m]))
        record["same on all"] = len({record[s] for s in rows_by_source}) == 1
        out.append(record)
    return pd.DataFrame(out)


def markdown(findings: pd.DataFrame, order: pd.DataFrame) -> str:
    """Both tables in Markdown, p-values to two significant digits (Mann–Whitney / paired), each
    verdict's difference beside its minimum reliable difference."""
    sources = list(order.columns[1:-1])
    lines = ["| finding | metric | verdict on " + sources[0] + " | difference (MRD) | "
             + " | ".join(f"p, {s} (MW / paired)" for s in sources) + " | significant on (MW / paired) |",
             "|" + " --- |" * (5 + len(sources))]
    for r in findings.to_dict("records"):
        gap = (f"{r['difference']:.3f} ({r['mrd']:.3f})" if np.isfinite(r.get("difference", np.nan)) else "–")
        lines.append(f"| {r['finding']} | {r['metric']} | {r['verdict']} | {gap} | "
                     + " | ".join(f"{r[s]:.2g} / {r[f'{s} paired']:.2g}" for s in sources)
                     + f" | {r['significant on']} / {r['significant on, paired']} of {len(sources)} |")
    lines += ["", "| metric | " + " | ".join(sources) + " | same on all |", "|" + " --- |" * (2 + len(sources))]
    for r in order.to_dict("records"):
        lines.append(f"| {r['metric']} | " + " | ".join(r[s] for s in sources)
                     + f" | {'yes' if r['same on all'] else '**no**'} |")
    return "\n".join(lines)


SEPARATED = ("topk", "steering", "hybrid")
"""The methods whose trained-SAE features are told from a random SAE's (`separation_table`)."""


def auroc(positive: np.ndarray, negative: np.ndarray, axis: int = -1) -> np.ndarray:
    """The AUROC of telling `positive` from `negative` by their values along `axis`: P(a random
    positive scores above a random negative), ties counting half (the Mann–Whitney U over n_p * n_n).
    Vectorised over the other axes, so a bootstrap computes every resample's in one call."""
    positive, negative = np.moveaxis(np.asarray(positive, np.float64), axis, -1), \
        np.moveaxis(np.asarray(negative, np.float64), axis, -1)
    n_p, n_n = positive.shape[-1], negative.shape[-1]
    ranks = stats.rankdata(np.concatenate([positive, negative], axis=-1), axis=-1)
    u = ranks[..., :n_p].sum(-1) - n_p * (n_p + 1) / 2
    return u / (n_p * n_n)


def separation(trained: np.ndarray, random: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """How well per-feature scores tell a trained SAE's features (positive) from a random SAE's: the
    AUROC with a percentile-bootstrap interval (each side resampled on its own, seeded: the features
    of the two SAEs are unrelated, so nothing is paired), and the difference of means. A metric that
    cannot tell them apart (AUROC near 0.5) scores fidelity to any direction, not what an SAE
    learned. NaNs are dropped; with fewer than two scores on a side everything is NaN."""
    trained, random = (np.asarray(x, np.float64) for x in (trained, random))
    trained, random = trained[np.isfinite(trained)], random[np.isfinite(random)]
    out = {"auroc": float("nan"), "low": float("nan"), "high": float("nan"), "difference": float("nan"),
           "n_trained": len(trained), "n_random": len(random)}
    if len(trained) < 2 or len(random) < 2:
        return out
    out["auroc"] = float(auroc(trained, random))
    out["difference"] = float(trained.mean() - random.mean())
    if np.ptp(np.concatenate([trained, random])) == 0:  # every resample ties: 0.5 exactly
        out["low"] = out["high"] = out["auroc"]
        return out
    ci = stats.bootstrap((trained, random), auroc, n_resamples=RESAMPLES, confidence_level=confidence,
                         method="percentile", vectorized=True, paired=False,
                         rng=np.random.default_rng(SEED)).confidence_interval
    out["low"], out["high"] = float(ci.low), float(ci.high)
    return out


def random_sae_sources(by_source: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Each random SAE's source among `by_source` -> the trained source it stands in for (by name:
    `default@1+random-sae-0` -> `default@1`, a protocol tag kept), when that one is there too."""
    pairs = {name: trained_source_of(name) for name in by_source}
    return {name: trained for name, trained in pairs.items() if trained is not None and trained in by_source}


def without_random_saes(by_source: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """`by_source` less every random SAE's source: a random SAE is a control, not a world on which a
    verdict is tested again."""
    return {name: rows for name, rows in by_source.items() if trained_source_of(name) is None}


def separation_table(by_source: dict[str, pd.DataFrame], metrics: list[str] | None = None) -> pd.DataFrame:
    """Per (trained source, random SAE, LM, metric, method in `SEPARATED`): `separation` of the
    trained source's per-feature scores from the random SAE's, and both means. `metrics`: the
    columns to compare (default: `FINDING_METRICS` that the rows hold)."""
    out = []
    for random_name, trained_name in random_sae_sources(by_source).items():
        trained_rows, random_rows = by_source[trained_name], by_source[random_name]
        columns = [m for m in (metrics or FINDING_METRICS) if m in trained_rows and m in random_rows]
        for lm in [lm for lm in ("small", "medium", "large") if lm in set(random_rows.lm)] or sorted(set(random_rows.lm)):
            for metric in columns:
                for method in SEPARATED:
                    a, b = _scores(trained_rows, method, lm, metric), _scores(random_rows, method, lm, metric)
                    if not (np.isfinite(a).any() and np.isfinite(b).any()):
                        continue
                    out.append({"source": trained_name, "random_sae": random_name, "lm": lm, "metric": metric,
                                "method": method, "trained_mean": _mean(a), "random_mean": _mean(b),
                                **separation(a, b)})
    return pd.DataFrame(out)


def separation_markdown(separation_rows: pd.DataFrame) -> str:
    """The separation table in Markdown: per (LM, metric), each method's trained / random means and
    AUROC [95% CI]."""
    lines = ["| source | random SAE | LM | metric | method | trained / random mean | difference | "
             "separation AUROC [95% CI] |", "|" + " --- |" * 8]
    for r in separation_rows.to_dict("records"):
        lines.append(f"| {r['source']} | {r['random_sae']} | {r['lm']} | {r['metric']} | {r['method']} | "
                     f"{r['trained_mean']:.3f} / {r['random_mean']:.3f} | {r['difference']:+.3f} | "
                     f"{r['auroc']:.2f} [{r['low']:.2f}, {r['high']:.2f}] |")
    return "\n".join(lines)
