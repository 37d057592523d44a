"""A feature's top images as a method shows them to the VLM: masked (patches where the feature is
inactive blacked out; the seed paper's default) or under a heatmap (the paper's option). Only the
B x K images shown are decoded, from the pool's own files.

Shape letters: B features, K top images, H, W, C pixels, P patches.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmark.image_pools import ImagePool
from benchmark.stores import TopImages

HEATMAP_RGB = np.array([0, 255, 0], np.float32)
HEATMAP_OPACITY = 0.6
"""The heatmap overlay: green, at this opacity where the feature is at its strongest in the image."""


def top_images(pool: ImagePool, top: TopImages, features: list[int], k: int,
               ranks_BK: np.ndarray | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """(B, K, H, W, C) each feature's K best images (`ranks_BK`: those ranks of its best instead, 0 the
    best, -1 none), decoded now (a missing one black), and (B, K, P) its activations on their patches
    (zero where none)."""
    ids_BK, acts_BKP = ranked(top, features, k, ranks_BK)
    images = pool.images(ids_BK.reshape(-1).numpy())
    return images.reshape(*ids_BK.shape, *images.shape[1:]), acts_BKP


def ranked(top: TopImages, features: list[int], k: int,
           ranks_BK: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) pool ids of each feature's K best images (or of `ranks_BK` of them; -1 where a rank is
    -1) and (B, K, P) its activations on their patches (zero there); nothing decoded."""
    ranks_BK = np.broadcast_to(np.arange(k), (len(features), k)) if ranks_BK is None else np.asarray(ranks_BK)
    among = max(int(ranks_BK.max()) + 1, 1)
    rows_B1, at_BK = np.arange(len(features))[:, None], torch.from_numpy(np.maximum(ranks_BK, 0))
    none_BK = torch.from_numpy(ranks_BK < 0)
    ids_BK = top.ids(features, among).gather(1, at_BK).masked_fill(none_BK, -1)
    acts_BKP = top.acts_BKP(features, among)[torch.from_numpy(rows_B1), at_BK].masked_fill(none_BK[..., None], 0)
    return ids_BK, acts_BKP


def masked(images_BKHWC: np.ndarray, acts_BKP: torch.Tensor, patch: int) -> np.ndarray:
    """The images with the patches where the feature is inactive blacked out (a new array; at 896 px
    the B x K images are large, so it is written once, not copied again)."""
    out = np.array(images_BKHWC, dtype=np.uint8)
    out *= per_pixel(acts_BKP.numpy() > 0, patch)
    return out


def heatmap(images_BKHWC: np.ndarray, acts_BKP: torch.Tensor, patch: int) -> np.ndarray:
    """The images whole, under a green overlay whose opacity per patch is the feature's activation
    there over its largest in the image."""
    strength_BKP = acts_BKP.clamp(min=0) / acts_BKP.amax(-1, keepdim=True).clamp(min=1e-12)
    alpha = HEATMAP_OPACITY * per_pixel(strength_BKP.numpy(), patch)
    return np.rint((1 - alpha) * images_BKHWC + alpha * HEATMAP_RGB).astype(np.uint8)


STYLES = {"masked": masked, "heatmap": heatmap}


def shown_top_images(pool: ImagePool, top: TopImages, features: list[int], k: int, patch: int,
                     style: str = "masked", ranks_BK: np.ndarray | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Each feature's top images (`ranks_BK` of them, else its k best) as `style` shows them, and where
    it is active: (B, K, H, W, C) uint8, (B, K, P) bool. Masking works in place on the decoded images
    (no second copy)."""
    images, acts_BKP = top_images(pool, top, features, k, ranks_BK)
    if style == "masked":
        images *= per_pixel(acts_BKP.numpy() > 0, patch)
        return images, acts_BKP > 0
    return STYLES[style](images, acts_BKP, patch), acts_BKP > 0


def per_pixel(values_BKP: np.ndarray, patch: int) -> np.ndarray:
    """(B, K, H, W, 1): each patch's value spread over its pixels (patches row-major)."""
    b, k, p = values_BKP.shape
    grid = int(round(p ** 0.5))
    spread = np.broadcast_to(values_BKP.reshape(b, k, grid, 1, grid, 1), (b, k, grid, patch, grid, patch))
    return spread.reshape(b, k, grid * patch, grid * patch, 1)
