"""What a source may offer beyond models and images, each behind a small interface. A method or a
metric names the capabilities it needs when it registers (`needs=("segmenter",)`); a run on a
source that lacks one is refused before anything is computed.

- `groundtruth`: what each feature is known to mean (the world: dissection against exact masks);
- `generator`: text -> images of what the text names (generation AUROC);
- `segmenter`: text + pool images -> where in them the text's referent is (localization IoU);
- `vocabulary`: words a random explanation is drawn from (the `random-words` control).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import pandas as pd

SEGMENT_OPTIONS = ("mask", "pool")
"""The optional keywords a segmenter's `segment` may take; it declares those it takes as `offers`."""
GROUNDTRUTH_COLUMNS = ("concept", "category", "level", "aligned", "position_tag")
"""Columns of `GroundTruth.table()` besides `feature`; NaN on a source without ground truth."""


class GroundTruth(Protocol):
    def table(self) -> pd.DataFrame:
        """One row per feature: `feature` and `GROUNDTRUTH_COLUMNS` (concept NaN where none is known)."""

    def phrase(self, feature: int) -> str | None:
        """The feature's known meaning as an explanation would say it ('red at top left'); None if unknown."""

    def names(self, text: str, feature: int) -> float:
        """1.0 if `text` names the feature's concept (its word or a synonym), 0.0 if not, NaN if unknown."""

    def rivals(self, feature: int) -> list[str]:
        """Wrong phrases of the same kind as `phrase(feature)` ('blue at top left'): the validation's foils."""


class Generator(Protocol):
    def draw(self, text: str, n: int, seed: int) -> np.ndarray | None:
        """(n, H, W, 3) uint8 images of what `text` names, at the pools' size; None when it names
        nothing this generator can draw (a generation metric then scores chance)."""

    def cut(self, text: str) -> bool:
        """Optional: whether the generator reads only part of `text` (longer than its text encoders
        read); a metric's row says so. Without it, rows say NaN: unknown."""


class Segmenter(Protocol):
    offers: tuple[str, ...]
    """The optional keywords its `segment` takes, of `SEGMENT_OPTIONS` (none declared: none): `mask`
    (union or first) and `pool` (scoring or topk). A run whose scoring settings ask for one it does
    not offer is refused before anything is computed."""

    def segment(self, text: str, index_I: np.ndarray) -> np.ndarray:
        """(I, P) bool: the patches of scoring-pool images `index_I` that show what `text` names, and
        the keywords of `offers`."""

    def cut(self, text: str) -> bool:
        """Optional: whether the segmenter reads only part of `text`, as `Generator.cut`."""


@dataclass(frozen=True)
class Capabilities:
    groundtruth: GroundTruth | None = None
    generator: Generator | None = None
    segmenter: Segmenter | None = None
    vocabulary: tuple[str, ...] | None = None


NEEDS = tuple(f.name for f in fields(Capabilities))
"""What a method or metric may declare it needs."""


def checked_offers(cls: type) -> type:
    """`cls` if its declared `offers` (if any) name only `SEGMENT_OPTIONS`: checked as a segmenter
    registers, so a misspelt ability fails then, not in a run."""
    unknown = set(getattr(cls, "offers", ())) - set(SEGMENT_OPTIONS)
    if unknown:
        raise TypeError(f"{cls!r} offers {sorted(unknown)}; a segmenter may offer {', '.join(SEGMENT_OPTIONS)}")
    return cls
