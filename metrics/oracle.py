"""Oracle (world only): does the explanation name the feature's ground-truth concept?

1 when the explanation names the concept that dissection assigned to the feature, by its own word
or a synonym (`benchmark.world.concepts.SYNONYMS`, whole words), else 0; NaN for features without
a concept. It is the yardstick the other metrics are validated against, never a leaderboard
criterion by itself: it ignores whether the explanation also names wrong things.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring import ScoringContext, metric
from benchmark.world.concepts import mentioned_concepts


def names_concept(text: str, concept: str | None) -> float:
    if not isinstance(concept, str):
        return float("nan")
    return float(concept in mentioned_concepts(text))


@metric("oracle", columns=("oracle",), needs_groundtruth=True)
def score_oracle(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    concepts = ctx.groundtruth.concept
    return {"oracle": np.array([names_concept(t, concepts.loc[f]) for f, t in zip(features, texts)])}
