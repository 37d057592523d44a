"""Generation AUROC (the seed paper's, after CoSy): draw images *of the explanation* and ask whether
the feature fires more on them than on random images.

The source's generator (`benchmark.sources.capabilities.Generator`; in the world, the procedural
renderer) draws `generated_images` images of what the explanation names. The statistic is the
AUROC of the feature's activation (mean over patches) on those images against `control_images`
random scoring-pool images; beside it CoSy's MAD, (mean on synthetic − mean on control) / std on
control, NaN where the controls do not vary. An explanation the generator can draw nothing of scores
0.5 (MAD NaN): it predicts nothing. `generation_text_cut` is 1 where the generator's text
encoders read only part of the prompt (the pipeline cut it), NaN where the generator cannot say. With `statistic = "pooled"` (the seed paper's), each row also
keeps its activations, and `main.csv` reports one AUROC pooled over every feature's (`pooled_auroc`)
beside the mean, with a bootstrap CI over features; the seed paper draws 3 images per explanation
against 3 controls per feature seeded by its latent id (`ScoringConfig.controls`). A source without a generator is refused before anything is
computed; real sources name one in `[generator]` (`benchmark.sources.generators`).
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring.context import SAMPLES, ScoringContext, metric
from metrics.functional import auroc


def generation_auroc(synthetic_N: np.ndarray, control_M: np.ndarray) -> float:
    """AUROC of activations on synthetic images (positive) vs control images (negative)."""
    labels = np.concatenate([np.ones(len(synthetic_N), bool), np.zeros(len(control_M), bool)])
    return auroc(np.concatenate([synthetic_N, control_M]), labels)


def mean_activation_difference(synthetic_N: np.ndarray, control_M: np.ndarray) -> float:
    """CoSy's MAD: (mean synthetic − mean control) / std control (population std); NaN when the
    controls are constant."""
    spread = float(np.std(control_M))
    return float((np.mean(synthetic_N) - np.mean(control_M)) / spread) if spread > 0 else float("nan")


def pooled_auroc(samples: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The seed paper's statistic: ONE AUROC over every feature's synthetic (positive) and control
    (negative) activations pooled together; NaN without both kinds."""
    if not samples:
        return float("nan")
    return generation_auroc(np.concatenate([s for s, _ in samples]), np.concatenate([c for _, c in samples]))


@metric("generation-auroc", columns=("generation_auroc", "generation_mad", "generation_text_cut"), needs=("generator",),
        records=lambda config: config.control_images, pooled=pooled_auroc)
def score_generation(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict:
    control_BM = ctx.controls_of(features).numpy()
    out, mad = np.full(len(features), 0.5), np.full(len(features), np.nan)
    samples: list[tuple[list[float], list[float]] | None] = [None] * len(features)
    for i, synthetic_NF in enumerate(ctx.generated_activations(texts)):
        if synthetic_NF is not None:
            synthetic_N, control_M = synthetic_NF[:, features[i]].numpy(), control_BM[i]
            out[i], mad[i] = generation_auroc(synthetic_N, control_M), mean_activation_difference(synthetic_N, control_M)
            samples[i] = (synthetic_N.tolist(), control_M.tolist())
    cut = np.array([ctx.text_cut("generator", ctx.generation_text(t) if t.strip() else t) for t in texts])
    scores = {"generation_auroc": out, "generation_mad": mad, "generation_text_cut": cut}
    return {**scores, SAMPLES: samples} if ctx.config.statistic == "pooled" else scores
