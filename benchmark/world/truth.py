"""The world's implementations of a source's capabilities (`benchmark.sources.capabilities`): its
ground truth (dissection's labels), its renderer as the generator, its exact object masks as the
segmenter, and its concept words as the vocabulary. Metrics read them only through those
interfaces, so what `validate-metrics` validates here is what a real generator or segmenter plugs into.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from benchmark.sources.capabilities import SEGMENT_OPTIONS, Capabilities
from benchmark.world.concepts import (
    CATEGORY_VALUES,
    CONCEPT_BY_NAME,
    CONCEPTS,
    POSITIONS,
    ObjectSpec,
    mentioned_concepts,
)
from benchmark.world.groundtruth import MIN_FRACTION, concept_phrase, quadrant_of_patch
from benchmark.world.pools import Pool, object_patch_masks
from benchmark.world.render import render_concepts


class WorldTruth:
    """Dissection's label of each feature (`groundtruth.csv`), read as the `GroundTruth` interface."""

    def __init__(self, table: pd.DataFrame):
        self._table = table.set_index("feature", drop=False)

    def table(self) -> pd.DataFrame:
        return self._table.reset_index(drop=True)

    def phrase(self, feature: int) -> str | None:
        row = self._table.loc[feature]
        return concept_phrase(row.category, row.concept, row.position_tag) if isinstance(row.concept, str) else None

    def names(self, text: str, feature: int) -> float:
        concept = self._table.concept.loc[feature]
        return float(concept in mentioned_concepts(text)) if isinstance(concept, str) else float("nan")

    def rivals(self, feature: int) -> list[str]:
        row = self._table.loc[feature]
        if not isinstance(row.concept, str):
            return []
        return [concept_phrase(row.category, wrong, row.position_tag) for wrong in CATEGORY_VALUES[row.category]
                if wrong != row.concept]


class WorldRenderer:
    """The procedural renderer as a text-to-image model: images of the concepts a text names (own
    words or synonyms), seeded by those concepts so that two texts naming the same ones get the
    same images; nothing renderable named gives None."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def draw(self, text: str, n: int, seed: int) -> np.ndarray | None:
        concepts = mentioned_concepts(text)
        if not concepts:
            return None
        key = int(hashlib.sha256(" ".join(sorted(concepts)).encode()).hexdigest()[:8], 16)
        return render_concepts(concepts, n, self.image_size, key + seed)

    def cut(self, text: str) -> bool:
        """The renderer reads the whole text."""
        return False


class WorldSegmenter:
    """The pools' exact masks as a text-grounded segmenter: the patches showing an object that has
    every attribute the text names (any one of several named values of a category), inside the named
    quadrant(s) when positions are named; nothing named gives an empty mask."""

    def __init__(self, scoring: Pool, patch: int, topk: Pool | None = None):
        self._pools = {name: pool for name, pool in (("scoring", scoring), ("topk", topk)) if pool is not None}
        self.patch, self._masks = patch, {}
        self.quadrant_P = quadrant_of_patch(scoring.images_NHWC.shape[1] // patch)

    def pools(self, pool: str) -> tuple[list, np.ndarray]:
        """(objects per image, (N, K, P) each object's patches) of `pool`, computed on first use."""
        read = self._pools[pool]
        if pool not in self._masks:
            self._masks[pool] = object_patch_masks(read.segmentation_NHW, self.patch, MIN_FRACTION)
        return read.objects, self._masks[pool]

    def cut(self, text: str) -> bool:
        """The exact masks are looked up from the whole text."""
        return False

    offers = SEGMENT_OPTIONS

    def segment(self, text: str, index_I: np.ndarray, mask: str = "union", pool: str = "scoring") -> np.ndarray:
        """(I, P) the named objects' patches on images `index_I` of `pool`: all of them (union) or the
        first in the scene's order (first)."""
        concepts = mentioned_concepts(text)
        objects, masks_NKP = self.pools(pool)
        return np.stack([named_mask(objects[i], masks_NKP[i], concepts, self.quadrant_P, first=mask == "first")
                         for i in index_I])


def matches(obj: ObjectSpec, wanted: dict[str, set[str]]) -> bool:
    """Whether the object has every named attribute (position is handled as a region, not here)."""
    have = obj.concepts()
    return all(have.get(category) in values for category, values in wanted.items() if category != "position")


def named_mask(objects: tuple[ObjectSpec, ...], object_masks_KP: np.ndarray, concepts: set[str],
               quadrant_P: np.ndarray, first: bool = False) -> np.ndarray:
    """(P,) patches that show what `concepts` names in one image (`first`: the first such object's only)."""
    wanted: dict[str, set[str]] = {}
    for name in concepts:
        wanted.setdefault(CONCEPT_BY_NAME[name].category, set()).add(name)
    mask = np.zeros(object_masks_KP.shape[1], bool)
    if not concepts:
        return mask
    for k, obj in enumerate(objects):
        if matches(obj, wanted):
            mask |= object_masks_KP[k]
            if first:
                break
    if "position" in wanted:
        mask &= np.isin(quadrant_P, [POSITIONS.index(p) for p in wanted["position"]])
    return mask


def world_capabilities(groundtruth: pd.DataFrame, scoring: Pool, patch: int, topk: Pool | None = None) -> Capabilities:
    return Capabilities(groundtruth=WorldTruth(groundtruth), generator=WorldRenderer(scoring.images_NHWC.shape[1]),
                        segmenter=WorldSegmenter(scoring, patch, topk), vocabulary=tuple(c.name for c in CONCEPTS))
