"""CLIP score (the seed paper's): the mean cosine similarity, under the scorer CLIP, between the
explanation and each of the feature's masked top-k images (the images top-k and hybrid show the
VLM, patches where the feature is inactive blacked out). Top images where the feature never fires
(all black) are left out."""
from __future__ import annotations

import numpy as np
import torch

from benchmark.scoring.context import ScoringContext, metric


def clip_score(text_D: torch.Tensor, images_KD: torch.Tensor) -> float:
    """Mean cosine of one text embedding and K image embeddings (all L2-normalised); NaN if K = 0."""
    if len(images_KD) == 0:
        return float("nan")
    return float((images_KD @ text_D).mean())


@metric("clip-score", columns=("clip_score",))
def score_clip(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    images_BKD, shown_BK = ctx.masked_top_emb(features)
    text_BD = ctx.text_emb(texts)
    return {"clip_score": np.array([clip_score(text_BD[i], images_BKD[i][shown_BK[i]]) for i in range(len(texts))])}
