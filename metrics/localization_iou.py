"""Localization IoU (the seed paper's segmentation IoU): does the explanation point at *where* the
feature fires?

On each of the feature's top `localization_images` scoring-pool images, the feature's binarised
activation map (patches with activation > 0) is compared with the mask of what the explanation
names: the patches showing an object that has every named attribute (any one of several named
values of a category), inside the named quadrant(s) when positions are named. The world's exact
segmentation plays the text-grounded segmenter. The score is the mean IoU over those images; an
explanation naming nothing has an empty mask and scores 0.
"""
from __future__ import annotations

import numpy as np

from benchmark.scoring import ScoringContext, metric
from benchmark.world.concepts import CONCEPT_BY_NAME, POSITIONS, ObjectSpec, mentioned_concepts
from benchmark.world.groundtruth import quadrant_of_patch
from metrics.functional import iou


def localization_iou(active_IP: np.ndarray, named_IP: np.ndarray) -> float:
    """Mean over images of IoU(active patches, named patches); images where both are empty are skipped."""
    values = [iou(a, n) for a, n in zip(active_IP, named_IP)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def matches(obj: ObjectSpec, wanted: dict[str, set[str]]) -> bool:
    """Whether the object has every named attribute (position is handled as a region, not here)."""
    have = obj.concepts()
    return all(have.get(category) in values for category, values in wanted.items() if category != "position")


def named_mask(objects: tuple[ObjectSpec, ...], object_masks_KP: np.ndarray, concepts: set[str],
               quadrant_P: np.ndarray) -> np.ndarray:
    """(P,) patches that show what `concepts` names in one image."""
    wanted: dict[str, set[str]] = {}
    for name in concepts:
        wanted.setdefault(CONCEPT_BY_NAME[name].category, set()).add(name)
    mask = np.zeros(object_masks_KP.shape[1], bool)
    if not concepts:
        return mask
    for k, obj in enumerate(objects):
        if matches(obj, wanted):
            mask |= object_masks_KP[k]
    if "position" in wanted:
        mask &= np.isin(quadrant_P, [POSITIONS.index(p) for p in wanted["position"]])
    return mask


@metric("localization-iou", columns=("localization_iou",), needs_groundtruth=True)
def score_localization(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    acts_NPB = ctx.acts_NPB(features)
    n_patches = acts_NPB.shape[1]
    quadrant_P = quadrant_of_patch(int(round(n_patches ** 0.5)))
    out = np.full(len(features), np.nan)
    for i, text in enumerate(texts):
        top = acts_NPB[:, :, i].mean(1).topk(ctx.config.localization_images).indices.numpy()
        concepts = mentioned_concepts(text)
        named = np.stack([named_mask(ctx.pool.objects[n], ctx.object_masks_NKP[n], concepts, quadrant_P) for n in top])
        out[i] = localization_iou((acts_NPB[top, :, i] > 0).numpy(), named)
    return {"localization_iou": out}
