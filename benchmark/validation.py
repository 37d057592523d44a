"""Showing that each metric measures what it claims, on a world that knows the truth.

Two numbers per metric, over the aligned features:
- `pairwise_auroc`: how often the metric scores the right concept phrase (the oracle's, e.g.
  'red at top left') above a wrong one of the same category ('blue at top left'), over every
  (feature, wrong value) pair, ties counting one half;
- `spearman_oracle`: Spearman correlation of the metric's headline column with `oracle` over every
  method's explanations of those features (all built-in methods, one LM size).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.context import Context, MethodConfig
from benchmark.registry import METHODS, METRICS
from benchmark.scoring import Metric, ScoringContext, score
from benchmark.world.build import World
from benchmark.world.concepts import CATEGORY_VALUES
from benchmark.world.groundtruth import concept_phrase
from metrics.functional import spearman


def concept_pairs(groundtruth: pd.DataFrame) -> pd.DataFrame:
    """One row per (aligned feature, wrong value of its category): feature, right and wrong phrase."""
    rows = []
    for r in groundtruth[groundtruth.aligned].itertuples():
        right = concept_phrase(r.category, r.concept, r.position_tag)
        for wrong in CATEGORY_VALUES[r.category]:
            if wrong != r.concept:
                rows.append({"feature": int(r.feature), "category": r.category, "right": right,
                             "wrong": concept_phrase(r.category, wrong, r.position_tag)})
    return pd.DataFrame(rows)


def pairwise_auroc(right: np.ndarray, wrong: np.ndarray) -> float:
    """P(right > wrong) over paired scores, ties one half; pairs with a NaN are dropped."""
    keep = ~(np.isnan(right) | np.isnan(wrong))
    if not keep.any():
        return float("nan")
    r, w = right[keep], wrong[keep]
    return float(((r > w) + 0.5 * (r == w)).mean())


def method_explanations(world: World, lm: str, features: list[int]) -> pd.DataFrame:
    """Every built-in method's explanation of `features` (cached like any run's)."""
    import methods  # noqa: F401
    from benchmark.explanations import explain

    ctx = Context(world, lm, MethodConfig())
    rows = []
    for name in METHODS.names():
        for f, text in explain(ctx, name, METHODS.get(name), features).items():
            rows.append({"method": name, "feature": f, "explanation": text})
    return pd.DataFrame(rows)


def validate(world: World, lm: str, metrics: list[Metric], sctx: ScoringContext) -> dict[str, dict[str, float]]:
    pairs = concept_pairs(world.groundtruth())
    aligned = sorted(pairs.feature.unique().tolist())
    explained = method_explanations(world, lm, aligned)
    oracle = _headline(sctx, METRICS.get("oracle"), explained)
    report = {}
    for m in metrics:
        right = _headline(sctx, m, pairs.assign(explanation=pairs.right))
        wrong = _headline(sctx, m, pairs.assign(explanation=pairs.wrong))
        values = _headline(sctx, m, explained)
        keep = ~(np.isnan(values) | np.isnan(oracle))
        report[m.name] = {"pairwise_auroc": _round(pairwise_auroc(right, wrong)),
                          "spearman_oracle": _round(spearman(values[keep], oracle[keep]))}
    return report


def _headline(sctx: ScoringContext, m: Metric, rows: pd.DataFrame) -> np.ndarray:
    scores = score(sctx, m, rows.feature.tolist(), rows.explanation.tolist())
    return scores[m.headline].to_numpy(np.float64)


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)
