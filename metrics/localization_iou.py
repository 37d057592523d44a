"""Localization IoU (the seed paper's segmentation IoU): does the explanation point at *where* the
feature fires?

On each of the feature's top `localization_images` scoring-pool images (or, with `localization_from
= "sampled"`, the seed paper's: the top-k pool images clip-score reads), the feature's binarised
activation map (patches with activation > 0) is compared with the source's segmenter's mask of what
the explanation names (the union of its masks, or the first alone: `ScoringConfig.mask`) (`benchmark.sources.capabilities.Segmenter`: in the paper a text-grounded
segmenter, LangSAM; here Grounding DINO + SAM or CLIPSeg, `benchmark.sources.segmenters`; in the
world its exact object masks). The headline is the mean IoU over those images; beside it the
paper's precision (the share of the named patches where the feature fires) and recall (the share
of the feature's patches that are named), each averaged over the images where it is defined. An
explanation naming nothing has an empty mask and scores IoU 0. A source without a segmenter is
refused before anything is computed.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring.context import ScoringContext, metric
from metrics.functional import iou


def localization(active_IP: np.ndarray, named_IP: np.ndarray) -> tuple[float, float, float]:
    """(IoU, precision, recall) of the named patches against the active ones, each the mean over the
    images where it is defined (IoU: either mask non-empty; precision: something named; recall:
    something active); NaN where no image defines it."""
    active_IP, named_IP = np.asarray(active_IP, bool), np.asarray(named_IP, bool)
    both_I = (active_IP & named_IP).sum(1)

    def mean(values: list[float]) -> float:
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def share(of_I: np.ndarray) -> float:
        return mean([b / n if n else float("nan") for b, n in zip(both_I, of_I)])

    return mean([iou(a, n) for a, n in zip(active_IP, named_IP)]), share(named_IP.sum(1)), share(active_IP.sum(1))


def localization_iou(active_IP: np.ndarray, named_IP: np.ndarray) -> float:
    """Mean over images of IoU(active patches, named patches); images where both are empty are skipped."""
    return localization(active_IP, named_IP)[0]


COLUMNS = ("localization_iou", "localization_precision", "localization_recall")
CUT = "localization_text_cut"
"""1 where the segmenter read only part of the explanation (Grounding DINO's `max_text_len`), NaN
where it cannot say."""


@metric("localization-iou", columns=(*COLUMNS, CUT), needs=("segmenter",),
        records=lambda config: config.localization_images)
def score_localization(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    return {**localization_scores(ctx, features, texts), CUT: np.array([ctx.text_cut("segmenter", t) for t in texts])}


def localization_scores(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    """`COLUMNS` per feature, on the images `localization_from` names."""
    out = np.full((len(features), len(COLUMNS)), np.nan)
    if ctx.config.localization_from == "sampled":  # the top-k pool images clip-score reads
        ids_BK, active_BKP = ctx.sampled_top(features)
        for i, text in enumerate(texts):
            shown = (ids_BK[i] >= 0).numpy()
            if text.strip() and shown.any():  # the seed paper leaves an empty explanation out
                out[i] = localization(active_BKP[i][shown].numpy(), ctx.segment(text, ids_BK[i][shown].numpy(), "topk"))
        return dict(zip(COLUMNS, out.T))
    mean_NB = ctx.image_means(features)
    k = min(ctx.config.localization_images, len(mean_NB))
    for i, (f, text) in enumerate(zip(features, texts)):
        if ctx.config.mask == "first" and not text.strip():
            continue  # the seed paper leaves an empty explanation out
        top = np.argsort(-mean_NB[:, i].numpy(), kind="stable")[:k]  # ties: the earlier image
        out[i] = localization((ctx.patch_acts(f, top) > 0).numpy(), ctx.segment(text, top))
    return dict(zip(COLUMNS, out.T))
