"""Fidelity metrics, one per file, each registered with `@metric(name, columns=...)`.

A metric module holds a pure function of tensors (the statistic, tested on known answers) and a
registered batched adapter `score(ctx: ScoringContext, features, explanations) -> {column: array}`
that feeds it from the world."""
from metrics import (  # noqa: F401  (registration)
    clip_score,
    detection,
    generation_auroc,
    localization_iou,
    oracle,
    semantic_similarity,
    simulation,
)
