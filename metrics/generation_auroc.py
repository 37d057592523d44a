"""Generation AUROC (the seed paper's, after CoSy): draw images *of the explanation* and ask whether
the feature fires more on them than on random images.

In the world, the procedural renderer is the text-to-image model: it draws `generated_images`
scenes of the concepts the explanation names (own words or synonyms; `render_concepts`). The
statistic is the AUROC of the feature's activation (mean over patches) on those images against
`control_images` random scoring-pool images. An explanation that names nothing renderable scores
0.5: it predicts nothing. For real image pools a `diffusers` pipeline would take the renderer's
place; that option is not built yet.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring import ScoringContext, metric
from benchmark.world.concepts import mentioned_concepts
from metrics.functional import auroc


def generation_auroc(synthetic_N: np.ndarray, control_M: np.ndarray) -> float:
    """AUROC of activations on synthetic images (positive) vs control images (negative)."""
    labels = np.concatenate([np.ones(len(synthetic_N), bool), np.zeros(len(control_M), bool)])
    return auroc(np.concatenate([synthetic_N, control_M]), labels)


@metric("generation-auroc", columns=("generation_auroc",), needs_groundtruth=True)
def score_generation(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    control_MF = ctx.control_activations.numpy()
    concepts = [mentioned_concepts(t) for t in texts]
    named = [i for i, c in enumerate(concepts) if c]
    out = np.full(len(features), 0.5)
    for i, synthetic_NF in zip(named, ctx.generated_activations([concepts[i] for i in named])):
        out[i] = generation_auroc(synthetic_NF[:, features[i]].numpy(), control_MF[:, features[i]])
    return {"generation_auroc": out}
