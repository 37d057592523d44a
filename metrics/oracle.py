"""Oracle (sources with ground truth only): does the explanation name the feature's known concept?

1 when the explanation names the concept the source's ground truth assigns to the feature (in the
world: dissection's label, by its own word or a synonym, whole words), else 0; NaN for features
without a concept. It is the yardstick the other metrics are validated against, never a leaderboard
criterion by itself: it ignores whether the explanation also names wrong things.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring.context import ScoringContext, metric


@metric("oracle", columns=("oracle",), needs=("groundtruth",))
def score_oracle(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    return {"oracle": np.array([ctx.groundtruth.names(t, f) for f, t in zip(features, texts)])}
