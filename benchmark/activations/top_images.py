"""A feature's top images as a method shows them to the VLM: masked (patches where the feature is
inactive blacked out; the seed paper's default), under a green heatmap, or under the seed paper's
heatmap option (viridis). Only the
B x K images shown are decoded, from the pool's own files.

Shape letters: the key in `benchmark`'s package docstring.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmark.activations.stores import TopImages
from benchmark.sources.image_pools import ImagePool

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


VIRIDIS_OPACITY = 0.35
"""The seed paper's heatmap option: viridis over the whole image at this opacity."""


def viridis(images_BKHWC: np.ndarray, acts_BKP: torch.Tensor, patch: int) -> np.ndarray:
    """The seed paper's heatmap option: each image's activation map min-max normalised, upsampled
    bicubic to the image, coloured by matplotlib's viridis and laid over the whole image at opacity
    0.35. Written in place one image at a time (at 896 px a float copy of every image would not fit)."""
    from matplotlib import colormaps

    colour_map = colormaps["viridis"]
    side, grid = images_BKHWC.shape[2], int(round(acts_BKP.shape[-1] ** 0.5))
    for b, k in np.ndindex(*acts_BKP.shape[:2]):
        acts_P = acts_BKP[b, k].float()
        low, high = acts_P.min(), acts_P.max()
        strength_GG = ((acts_P - low) / (high - low + 1e-8)).reshape(1, 1, grid, grid)
        strength_HW = torch.nn.functional.interpolate(strength_GG, size=(side, side), mode="bicubic",
                                                      align_corners=False)[0, 0].clamp(0, 1).numpy()
        colour_HWC = colour_map(strength_HW)[..., :3].astype(np.float32) * 255
        images_BKHWC[b, k] = np.rint((1 - VIRIDIS_OPACITY) * images_BKHWC[b, k] + VIRIDIS_OPACITY * colour_HWC)
    return images_BKHWC


STYLES = {"masked": masked, "heatmap": heatmap, "viridis": viridis}


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
