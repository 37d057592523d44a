"""Ground truth per SAE feature, in the manner of Network Dissection, at patch level.

A patch *shows* concept c when at least `min_fraction` of its pixels belong to objects with c. A
feature is *active* on a patch when its activation is > 0 (TopK SAEs are exactly sparse). For every
candidate (concept, scope, region) the IoU of the feature's active patches with the concept's mask
inside the region is computed over the held-out pool; regions are the whole image, each quadrant and
each single patch, so a position-local feature ("red, in this patch") is labelled 'red' with a
position tag rather than missed; scopes are below. The label is the best-IoU candidate. Reported with it:
`precision`, the share of the feature's activation mass on patches that show the concept anywhere.
A feature is *aligned* when iou >= ALIGNED_IOU and precision >= ALIGNED_PRECISION. The IoU bar is
low on purpose: an SAE splits a concept among many latents (several 'green' features, each firing on
part of the green patches with precision ~0.9), so a single latent's IoU stays small even when it is
clearly about its concept; precision carries the weight.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from benchmark.world.concepts import CONCEPT_BY_NAME, CONCEPTS, POSITIONS, fragment
from benchmark.world.pools import Pool, object_patch_masks

MIN_FRACTION = 0.1  # of a patch's pixels, for the patch to show an object
ALIGNED_IOU = 0.05  # Network Dissection calls a unit interpretable above IoU 0.04
ALIGNED_PRECISION = 0.8
POSITION_TAG_SHARE = 0.9  # a feature with this share of its mass in one quadrant gets that tag


def concept_patch_masks(pool: Pool, patch: int) -> dict[str, np.ndarray]:
    """concept -> (N, P) bool: patches that show the concept."""
    shows_NKP = object_patch_masks(pool.segmentation_NHW, patch, MIN_FRACTION)
    masks = {c.name: np.zeros((len(pool), shows_NKP.shape[2]), bool) for c in CONCEPTS}
    for i, objs in enumerate(pool.objects):
        for k, obj in enumerate(objs):
            for name in obj.concepts().values():
                masks[name][i] |= shows_NKP[i, k]
    return masks


def quadrant_of_patch(grid: int) -> np.ndarray:
    """(P,) index into POSITIONS of each patch's quadrant."""
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    return (rows >= grid // 2) * 2 + (cols >= grid // 2)


def regions(grid: int) -> list[tuple[str, np.ndarray]]:
    """(name, (P,) bool) for the whole image, each quadrant, each patch."""
    quadrant = quadrant_of_patch(grid)
    out = [("all", np.ones(grid * grid, bool))]
    out += [(POSITIONS[q], quadrant == q) for q in range(4)]
    out += [(f"patch {p}", np.arange(grid * grid) == p) for p in range(grid * grid)]
    return out


def dissect(acts_NPF: torch.Tensor, masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per feature: its best (concept, scope, region), IoU, precision, category, position
    tag, activation frequency, and whether it is aligned. Dead features get concept None.

    Scope 'patch': the concept's patches. Scope 'image': every patch of images that contain the
    concept, for features that respond to a concept's presence anywhere in the image (a late layer
    mixes context into background tokens). Precision is measured against the chosen scope's mask
    over the whole image, whatever the region."""
    n, p, f = acts_NPF.shape
    grid = int(round(p ** 0.5))
    acts = acts_NPF.reshape(n * p, f).float()
    active = (acts > 0).float()
    scoped = {}
    for concept, mask in masks.items():
        scoped[concept, "patch"] = mask
        scoped[concept, "image"] = np.repeat(mask.any(1, keepdims=True), p, axis=1)
    candidates, columns = [], []
    for (concept, scope), mask in scoped.items():
        local = CONCEPT_BY_NAME[concept].category != "position"
        for region, keep in regions(grid) if local else [("all", np.ones(p, bool))]:
            candidates.append((concept, scope, region))
            columns.append((mask & keep[None, :]).reshape(-1))
    cand = torch.from_numpy(np.stack(columns, 1)).float()  # (N*P, C)
    inter = active.T @ cand
    union = active.sum(0)[:, None] + cand.sum(0)[None, :] - inter
    iou = (inter / union.clamp_min(1)).numpy()
    best = iou.argmax(1)
    total_mass = acts.sum(0)
    alive = (total_mass > 0).numpy()
    quadrant_mass = torch.stack([acts_NPF[:, quadrant_of_patch(grid) == q].sum((0, 1)) for q in range(4)], 1)
    share = (quadrant_mass / total_mass.clamp_min(1e-12)[:, None]).numpy()
    rows = []
    for i in range(f):
        if not alive[i]:
            rows.append({"feature": i, "concept": None, "category": None, "level": None, "scope": None, "region": None,
                         "iou": 0.0, "precision": 0.0, "position_tag": None, "frequency": 0.0})
            continue
        concept, scope, region = candidates[best[i]]
        on = torch.from_numpy(scoped[concept, scope].reshape(-1))
        rows.append({
            "feature": i, "concept": concept, "category": CONCEPT_BY_NAME[concept].category,
            "level": CONCEPT_BY_NAME[concept].level, "scope": scope, "region": region,
            "iou": float(iou[i, best[i]]), "precision": float(acts[on, i].sum() / total_mass[i]),
            "position_tag": POSITIONS[share[i].argmax()] if share[i].max() >= POSITION_TAG_SHARE else None,
            "frequency": float(active[:, i].mean()),
        })
    table = pd.DataFrame(rows)
    table["aligned"] = (table.iou >= ALIGNED_IOU) & (table.precision >= ALIGNED_PRECISION)
    return table


def concept_phrase(category: str, concept: str, position_tag: str | None) -> str:
    """A feature's ground truth as a phrase, with its position tag: 'red at top left'."""
    concepts = {category: concept}
    if isinstance(position_tag, str) and category != "position":
        concepts["position"] = position_tag
    return fragment(concepts)
