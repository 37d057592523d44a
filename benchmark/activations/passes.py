"""SAE activations on image pools: encoded exactly, kept sparse, streamed into stores on disk.

One pass over a pool reads its images in batches (decoded on demand), runs the steering engine's own
tower pass up to the SAE's hidden state (what a method steers is what was measured), encodes the
patch tokens with the SAE and keeps every non-zero activation as a `Codes` batch: exact for every
SAE kind (TopK's k per token, or a ReLU's hundreds), with no cap on the active latents per token.
The batches stream into `benchmark.activations.stores` (`TopImages` for the top-k pool, `ScoringActivations`
for the scoring pool), cached in a directory keyed by the tower, the SAE, the pool, the split and
the store's settings; nothing of size pool x latents or pool x patches x anything is held in memory.

Shape letters: the key in `benchmark`'s package docstring.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmark.activations.stores import (
    Codes,
    ScoringActivations,
    ScoringPass,
    TopImages,
    TopImagesPass,
    image_statistic,
)
from benchmark.cache import cached_stage
from benchmark.models.adapters.base import VLMAdapter
from benchmark.models.sae import SAE
from benchmark.numerics import near_tie_tolerance
from benchmark.sources.image_pools import ImagePool, loader_workers
from benchmark.steering.engine import SteeringEngine

TOKENS_PER_BATCH = 2 ** 15
"""Tower tokens per batch of the activation pass."""
ENCODE_ELEMENTS = 2 ** 25
"""Dense SAE activations (tokens x latents) encoded at once: 128 MB of float32, whatever the batch."""


@torch.no_grad()
def encode_codes(sae: SAE, states_NPD: torch.Tensor, near_tie: float | None = None) -> Codes:
    """The SAE's activations on (N, P, D) states as sparse codes on the CPU, encoded in the SAE's
    dtype, `ENCODE_ELEMENTS` at a time so a wide SAE's dense activations never fill memory; with each
    latent's near-ties (`SAE.near_ties`) at relative tolerance `near_tie` (default: the SAE dtype's,
    `benchmark.numerics`; the states' own when they were computed coarser)."""
    n, p, d = states_NPD.shape
    dtype = sae.W_enc.dtype
    flat_TD = states_NPD.reshape(-1, d).to(dtype)
    rows = max(1, ENCODE_ELEMENTS // sae.d_sae)
    tokens, latents, values = [], [], []
    near_ties_F = torch.zeros(sae.d_sae, dtype=torch.long)
    for start in range(0, len(flat_TD), rows):
        pre = sae.pre_activations(flat_TD[start:start + rows])
        acts = sae.activate(pre)
        near_ties_F += sae.near_ties(pre, near_tie or near_tie_tolerance(dtype))
        token, latent = acts.nonzero(as_tuple=True)
        tokens.append((start + token).cpu()), latents.append(latent.cpu()), values.append(acts[token, latent].float().cpu())
    token = torch.cat(tokens)
    return Codes(token // p, token % p, torch.cat(latents), torch.cat(values), n, p, sae.d_sae, near_ties_F)


class TowerCodes:
    """The SAE's codes on images' patch tokens through the steering engine's tower pass (a token
    that is no patch, like CLS, is dropped), `TOKENS_PER_BATCH` tokens a batch. `vlm` runs the tower
    in the dtype measurements take (`benchmark.numerics`: float64 on a CPU); the SAE encodes in it, or
    in float32 where the tower runs coarser (bf16 on an accelerator) unless `sae_dtype` is "model"
    (the seed paper's code encodes in bf16 with its SAE cast to the model's dtype), and counts
    near-ties at the tower dtype's tolerance."""

    def __init__(self, vlm: VLMAdapter, hidden_state: int, sae: SAE, sae_dtype: str = "float32"):
        self.engine = SteeringEngine(vlm, hidden_state)
        self.patches_T = (vlm.token_patches()[:, 0] >= 0).to(vlm.device)
        dtype = vlm.dtype if sae_dtype == "model" else torch.promote_types(vlm.dtype, torch.float32)
        self.sae = copy.deepcopy(sae).to(vlm.device, dtype)
        self.near_tie = near_tie_tolerance(vlm.dtype)
        self.batch = max(1, TOKENS_PER_BATCH // int(self.patches_T.sum()))

    def __call__(self, images_NHWC: np.ndarray) -> Codes:
        states = torch.cat(list(self.engine.tower_states(images_NHWC, len(images_NHWC))))[:, self.patches_T]
        return encode_codes(self.sae, states, self.near_tie)

    def of_pool(self, pool: ImagePool, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, Codes]]:
        """(first image, codes) batch by batch over pool images [start, stop), decoded as they go."""
        stop = len(pool) if stop is None else stop
        batches = pool.batches(self.batch, start, stop, loader_workers(self.engine.vlm.device))
        total = -(-(stop - start) // self.batch)
        for first, images in tqdm(batches, total=total, desc="SAE activations", unit="batch", leave=False):
            yield first, self(images)

    def image_means(self, images_NHWC: np.ndarray) -> torch.Tensor:
        """(N, F) each latent's activation averaged over each image's patches (e.g. generated images)."""
        parts = [image_statistic(self(images_NHWC[s:s + self.batch]))
                 for s in range(0, len(images_NHWC), self.batch)]
        return torch.cat(parts) if parts else torch.zeros(0, self.sae.d_sae)


def write_store(dpath: Path, split: str, batches: Iterable[tuple[int, Codes]], n_images: int, patches: int,
                d_sae: int, keep: int, rank: str) -> None:
    """Streams a pool's codes into its split's store: the top images per latent (`topk`) or every
    activation by latent (`scoring`)."""
    store = TopImagesPass(d_sae, patches, keep, rank) if split == "topk" else ScoringPass(dpath, d_sae, patches, n_images)
    for start, codes in batches:
        store.add(start, codes)
    store.save(dpath) if split == "topk" else store.save()


def cached_store(parent: Path, key: dict, split: str, build: Callable[[Path], None]):
    """The split's store cached under `key` (what produced it, the harness's activation path included),
    built once by `build(dpath)` if absent."""
    dpath, _ = cached_stage(parent, f"activations-{split}", key, lambda d: build(d) or {})
    return TopImages(dpath) if split == "topk" else ScoringActivations(dpath)
