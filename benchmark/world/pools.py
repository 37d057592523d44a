"""The world's image pools as `datasets.Dataset`s on disk, and their in-memory array form.

Three splits from one seed: `train` (fits the models), `topk` (where methods pick the images that
activate a feature) and `scoring` (held out: ground truth and metrics). Each row holds the image, its
segmentation (pixel value i + 1 = object i), the caption and the object specs.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from benchmark.world.concepts import CATEGORIES, ObjectSpec, caption
from benchmark.world.render import render_many

SPLITS = ("train", "topk", "scoring")
FEATURES = datasets.Features({
    "image": datasets.Image(),
    "segmentation": datasets.Image(),
    "caption": datasets.Value("string"),
    "objects": datasets.Value("string"),  # JSON list of {category: concept}; fields lack shape/size/position
})


@dataclass
class Pool:
    """A split in memory. images_NHWC is uint8; segmentation_NHW holds object indices (0 = none)."""

    images_NHWC: np.ndarray
    segmentation_NHW: np.ndarray
    objects: list[tuple[ObjectSpec, ...]]
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, index: np.ndarray | list[int]) -> "Pool":
        return Pool(self.images_NHWC[index], self.segmentation_NHW[index],
                    [self.objects[i] for i in index], [self.captions[i] for i in index])


def make_pool(n: int, size: int, seed: int) -> Pool:
    scenes, images, segmentation = render_many(n, size, seed)
    objects = [s.objects for s in scenes]
    return Pool(images, segmentation, objects, [caption(o) for o in objects])


def save_pool(pool: Pool, path: Path) -> None:
    rows = {
        "image": [Image.fromarray(im) for im in pool.images_NHWC],
        "segmentation": [Image.fromarray(seg) for seg in pool.segmentation_NHW],
        "caption": pool.captions,
        "objects": [json.dumps([o.concepts() for o in objs]) for objs in pool.objects],
    }
    datasets.Dataset.from_dict(rows, features=FEATURES).save_to_disk(str(path))


def load_pool(path: Path) -> Pool:
    table = datasets.load_from_disk(str(path)).data
    objects = [tuple(ObjectSpec(**{c: o.get(c) for c in CATEGORIES}) for o in json.loads(s))
               for s in table.column("objects").to_pylist()]
    return Pool(_decode(table.column("image")), _decode(table.column("segmentation")), objects,
                table.column("caption").to_pylist())


def _decode(column) -> np.ndarray:
    """PNG bytes straight from the Arrow column: ten times faster than the dataset's row decoding."""
    return np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"]))) for cell in column.to_pylist()])


def content_hash(pool: Pool) -> str:
    """sha256 of what a pool holds (pixels, segmentation, captions, objects), not of its file bytes:
    the PNG encoder may differ between machines while the images do not."""
    h = hashlib.sha256()
    for array in (pool.images_NHWC, pool.segmentation_NHW):
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(json.dumps([pool.captions, [[o.concepts() for o in objs] for objs in pool.objects]]).encode())
    return h.hexdigest()


def object_patch_masks(segmentation_NHW: np.ndarray, patch: int, min_fraction: float = 0.1) -> np.ndarray:
    """(N, 2, P) bool: patch p *shows* object k when at least `min_fraction` of its pixels belong to it."""
    n, h, w = segmentation_NHW.shape
    cover = [(segmentation_NHW == k).reshape(n, h // patch, patch, w // patch, patch).mean(axis=(2, 4)).reshape(n, -1)
             for k in (1, 2)]
    return np.stack(cover, axis=1) >= min_fraction
