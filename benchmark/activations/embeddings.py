"""The scorer CLIP's embeddings of the scoring pool, computed once in a streamed pass and cached on
disk (memory-mapped): whole images (N, D) and patch tokens (N, P, D). A metric reads the rows it
needs; the patch embeddings of a large pool are never all in memory.

The key is the scorer's and the pool's content identity and the code that encodes them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.cache import cached_stage
from benchmark.identity import code_identity
from benchmark.models.scorer import BATCH_PIXELS, Scorer
from benchmark.sources.image_pools import ImagePool

KINDS = ("images", "patches")


def pool_embeddings(parent: Path, key: dict, scorer, pool: ImagePool, kind: str) -> np.ndarray:
    """(N, D) image or (N, P, D) patch embeddings of the pool, L2-normalised, memory-mapped.
    `scorer`: a callable giving the `Scorer`, opened only when the cache lacks them."""
    encode = Scorer.encode_images if kind == "images" else Scorer.encode_patches

    def build(dpath: Path) -> dict:
        model, out = scorer(), None
        batch = max(1, min(512, BATCH_PIXELS // pool.size ** 2))  # the scorer's own batches: the same boundaries
        for start, images in tqdm(pool.batches(batch), total=-(-len(pool) // batch), desc=f"scorer {kind}", leave=False):
            emb = encode(model, images).numpy()
            if out is None:
                out = np.lib.format.open_memmap(dpath / "embeddings.npy", "w+", np.float32, (len(pool), *emb.shape[1:]))
            out[start:start + len(emb)] = emb
        out.flush()
        return {}

    dpath, _ = cached_stage(parent, f"scorer-{kind}", {**key, "kind": kind, "code": code_identity(encode)}, build)
    return np.load(dpath / "embeddings.npy", mmap_mode="r")
