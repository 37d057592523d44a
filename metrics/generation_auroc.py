"""Generation AUROC (the seed paper's, after CoSy): draw images *of the explanation* and ask whether
the feature fires more on them than on random images.

The source's generator (`benchmark.sources.capabilities.Generator`; in the world, the procedural
renderer) draws `generated_images` images of what the explanation names. The statistic is the
AUROC of the feature's activation (mean over patches) on those images against `control_images`
random scoring-pool images. An explanation the generator can draw nothing of scores 0.5: it
predicts nothing. A source without a generator is refused before anything is computed.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring import ScoringContext, metric
from metrics.functional import auroc


def generation_auroc(synthetic_N: np.ndarray, control_M: np.ndarray) -> float:
    """AUROC of activations on synthetic images (positive) vs control images (negative)."""
    labels = np.concatenate([np.ones(len(synthetic_N), bool), np.zeros(len(control_M), bool)])
    return auroc(np.concatenate([synthetic_N, control_M]), labels)


@metric("generation-auroc", columns=("generation_auroc",), needs=("generator",),
        records=lambda config: config.control_images)
def score_generation(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    control_MF = ctx.control_activations.numpy()
    out = np.full(len(features), 0.5)
    for i, synthetic_NF in enumerate(ctx.generated_activations(texts)):
        if synthetic_NF is not None:
            out[i] = generation_auroc(synthetic_NF[:, features[i]].numpy(), control_MF[:, features[i]])
    return {"generation_auroc": out}
