"""Feature images: each feature's top-k images of the `topk` pool (the ones top-k and hybrid show the
VLM) with its activation overlaid as a heat map, and the same images masked as the VLM saw them
(`benchmark.activations.top_images`), each written as one PNG strip of k tiles.

Byte cost per feature: two PNG strips of k tiles. On the default world (32 x 32 images, k = 5) the
heat-map strip averages 1.0 KB and the masked one 0.3 KB (1,024 features). Tiles larger than
`TILE_MAX` pixels (real models' 224-px images) are downscaled to it, which bounds a strip at about
k x 25 KB.

Every run's images come the same way, world or real models: from the source its run.json names
(`benchmark.report.inputs.open_run_source`), its pool and the activations the run cached (never
recomputed here, which would load the VLM).
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.activations.stores import TOP_KEPT, TopImages
from benchmark.activations.top_images import masked, top_images
from benchmark.config.models import PoolSpec
from benchmark.registry import UsageError
from benchmark.sources.image_pools import ImagePool
from benchmark.sources.source import Source

TILE_MAX = 96
"""Largest tile side in pixels; bigger images are downscaled (the browser upscales small ones)."""
GAP = 1
"""Pixels of background between tiles."""
ALPHA = (0.15, 0.4)
"""Opacity of the heat colour inside an active patch (its frame is opaque): the first plus the
second times its activation relative to the feature's largest."""
DIM = 0.4
"""Brightness left to patches where the feature is inactive, so that the active ones stand out."""
RAMP = np.array([[255, 255, 64], [255, 128, 0], [220, 0, 60]], np.float32)
"""Heat colours from weak to strong activation: yellow, orange, crimson."""


def heat_colours(w: np.ndarray) -> np.ndarray:
    """(..., 3) colours along `RAMP` for weights in [0, 1]."""
    x = np.clip(w, 0, 1) * (len(RAMP) - 1)
    lo = np.minimum(np.floor(x).astype(int), len(RAMP) - 2)
    t = (x - lo)[..., None]
    return RAMP[lo] * (1 - t) + RAMP[lo + 1] * t


def heat_overlay(images_KHWC: np.ndarray, acts_KP: np.ndarray, patch: int) -> np.ndarray:
    """Each active patch framed and tinted in the colour of its activation relative to the largest
    over all k images (yellow: weak, crimson: strongest); inactive patches dimmed. The frame tells
    the heat map from the image's own colours."""
    k, h = images_KHWC.shape[:2]
    top = acts_KP.max()
    weight_KP = acts_KP / top if top > 0 else np.zeros_like(acts_KP)
    grid = h // patch
    weight_KHW = np.repeat(np.repeat(weight_KP.reshape(k, grid, grid), patch, axis=1), patch, axis=2)
    active = (weight_KHW > 0)[..., None]
    inner = np.isin(np.arange(h) % patch, (0, patch - 1), invert=True)
    frame_HW = ~(inner[:, None] & inner[None, :])
    a = np.where(frame_HW, 1.0, ALPHA[0] + ALPHA[1] * weight_KHW)[..., None]
    image = images_KHWC.astype(np.float32)
    out = np.where(active, image * (1 - a) + heat_colours(weight_KHW) * a, image * DIM)
    return np.round(out).astype(np.uint8)


def strip(tiles_KHWC: np.ndarray) -> np.ndarray:
    """The tiles side by side with `GAP` white pixels between them, each downscaled to `TILE_MAX`."""
    tiles = [_fit(t) for t in tiles_KHWC]
    h, w, c = tiles[0].shape
    out = np.full((h, len(tiles) * (w + GAP) - GAP, c), 255, np.uint8)
    for i, tile in enumerate(tiles):
        out[:, i * (w + GAP):i * (w + GAP) + w] = tile
    return out


def png(array_HWC: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array_HWC).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def top_image_arrays(pool: ImagePool, top: TopImages, features: list[int], k: int,
                     patch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each feature's top images, their masked copies, their (B, k, P) activations and their pool
    indices. Decodes and reads the B x k top images only, so it stays small for large pools."""
    images, acts_BKP = top_images(pool, top, features, k)
    return images, masked(images, acts_BKP, patch), acts_BKP.numpy(), top.ids(features, k).numpy()


class FeatureImages:
    """A source's `topk` pool, the SAE's activations on it that its run cached, captions and each
    feature's scale, ready to draw any feature's images."""

    def __init__(self, source: Source, k: int, run: str):
        def missing():
            raise UsageError(f"run {run}: the SAE's activations on its pools are not in the cache {source.root} "
                             f"(set FEATUREBENCH_CACHE to the run's cache, or run it again)")

        self.top = source.activations("topk", missing, keep=max(TOP_KEPT, k))  # first: fails before the pool is read
        self.k = k
        self.patch = source.patch
        self.pool = source.pool("topk")
        self.captions = self.pool.labels or caption_column(source.spec.pool)
        self.scales = pd.Series(source.scales(missing))

    def caption(self, i: int) -> str:
        """What the feature page says under the top-k pool's image i."""
        return self.captions[i] if self.captions else f"top-k pool image {i}"

    def draw(self, features: list[int]) -> dict[int, dict]:
        """Per feature: the heat-map strip and the masked strip as PNG bytes, the top images' captions
        and their mean activations."""
        images, masked_BK, acts_BKP, idx_BK = top_image_arrays(self.pool, self.top, features, self.k, self.patch)
        return {f: {"heat": png(strip(heat_overlay(images[i], acts_BKP[i], self.patch))),
                    "masked": png(strip(masked_BK[i])),
                    "captions": [self.caption(j) for j in idx_BK[i]],
                    "activations": [round(float(a), 3) for a in acts_BKP[i].mean(-1)]}
                for i, f in enumerate(features)}


def caption_column(pool: PoolSpec) -> list[str] | None:
    """The pool's `caption` column, when its source is a saved dataset (`save_to_disk`) that has one
    and is the top-k pool whole, in order: `scoring_source` is set. A pool split by the source
    (`scoring_fraction`) has its top-k part in another order, so its images go uncaptioned."""
    import datasets

    if pool.scoring_source is None:
        return None
    try:
        dataset = datasets.load_from_disk(pool.source)
    except FileNotFoundError:  # an image folder or a hub name
        return None
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[pool.split]
    if "caption" not in dataset.column_names:
        return None
    return [str(c) for c in dataset.select_columns(["caption"])["caption"]]


def _fit(tile_HWC: np.ndarray) -> np.ndarray:
    h, w, _ = tile_HWC.shape
    if max(h, w) <= TILE_MAX:
        return tile_HWC
    scale = TILE_MAX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(tile_HWC).resize(size, Image.Resampling.BILINEAR))
