"""SAE activations over an image pool: computed once in batches, cached on disk in sparse form.

Sparse (the k active latents' indices and values per patch token) rather than dense: a TopK SAE has
exactly k non-zeros per token, so the form is exact and k / d_sae the size of the dense tensor
(8 / 1024 for the default world: 5,000 images x 16 patches x 8 values, not x 1,024). The cache file
is `activations.safetensors` with `indices_NPK` (int32) and `values_NPK` (float32), in a directory
keyed by a hash of the tower, the SAE, the layer and the pool.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from benchmark.cache import cached_stage
from benchmark.models.adapters.base import VLMAdapter
from benchmark.models.sae import SAE
from benchmark.steering.engine import SteeringEngine

FILE = "activations.safetensors"
TOKENS_PER_BATCH = 2 ** 15
"""Tower tokens per batch of the activation pass (the SAE's dense pre-activations are that x d_sae)."""


@dataclass
class PoolActivations:
    indices_NPK: torch.Tensor
    values_NPK: torch.Tensor
    d_sae: int

    @classmethod
    def concat(cls, parts: list["PoolActivations"]) -> "PoolActivations":
        """Shards of one pass over consecutive images, joined in order."""
        return cls(torch.cat([p.indices_NPK for p in parts]), torch.cat([p.values_NPK for p in parts]), parts[0].d_sae)

    @property
    def shape(self) -> tuple[int, int, int]:
        n, p, _ = self.indices_NPK.shape
        return n, p, self.d_sae

    def dense(self, features: torch.Tensor | None = None) -> torch.Tensor:
        """(N, P, F) activations of `features` (all latents when None), never materialising the
        other latents."""
        n, p, _ = self.shape
        if features is None:
            return torch.zeros(n, p, self.d_sae).scatter_(-1, self.indices_NPK.long(), self.values_NPK)
        unique, inverse = torch.as_tensor(features).unique(return_inverse=True)
        column = torch.full((self.d_sae,), -1, dtype=torch.long)
        column[unique] = torch.arange(len(unique))
        col_NPK = column[self.indices_NPK.long()]
        hit = col_NPK >= 0
        out = torch.zeros(n, p, len(unique))
        ni, pi, _ = hit.nonzero(as_tuple=True)
        out[ni, pi, col_NPK[hit]] = self.values_NPK[hit]
        return out[..., inverse]

    def mean_over_patches(self) -> torch.Tensor:
        """(N, F): each latent's activation averaged over an image's patches (the paper's ranking)."""
        n, p, _ = self.shape
        out = torch.zeros(n, self.d_sae)
        out.scatter_add_(1, self.indices_NPK.reshape(n, -1).long(), self.values_NPK.reshape(n, -1))
        return out / p

    def top_images(self, k: int) -> torch.Tensor:
        """(F, k) image indices with the highest mean activation per latent, best first."""
        return self.mean_over_patches().topk(k, dim=0).indices.T


def masked_top_images(images_NHWC: np.ndarray, acts: PoolActivations, top_FK: torch.Tensor, features: list[int],
                      patch: int) -> tuple[np.ndarray, torch.Tensor]:
    """Each feature's top images with the patches where it is inactive blacked out (what top-k shows
    the VLM), and where it is active: (B, k, H, W, C) uint8, (B, k, P) bool."""
    images, acts_BKP = _top_images(images_NHWC, acts, top_FK, features)
    keep = _per_pixel(acts_BKP.numpy() > 0, patch)
    return np.where(keep, images, 0).astype(np.uint8), acts_BKP > 0


HEATMAP_RGB = np.array([0, 255, 0], np.float32)
HEATMAP_OPACITY = 0.6
"""The heatmap overlay: green, at this opacity where the feature is at its strongest in the image."""


def heatmap_top_images(images_NHWC: np.ndarray, acts: PoolActivations, top_FK: torch.Tensor, features: list[int],
                       patch: int) -> tuple[np.ndarray, torch.Tensor]:
    """Each feature's top images whole, under a green overlay whose opacity per patch is the feature's
    activation there over its largest in the image (the seed paper's heatmap option), and where it
    is active: (B, k, H, W, C) uint8, (B, k, P) bool."""
    images, acts_BKP = _top_images(images_NHWC, acts, top_FK, features)
    strength_BKP = acts_BKP.clamp(min=0) / acts_BKP.amax(-1, keepdim=True).clamp(min=1e-12)
    alpha = HEATMAP_OPACITY * _per_pixel(strength_BKP.numpy(), patch)
    return np.rint((1 - alpha) * images + alpha * HEATMAP_RGB).astype(np.uint8), acts_BKP > 0


def _top_images(images_NHWC: np.ndarray, acts: PoolActivations, top_FK: torch.Tensor,
                features: list[int]) -> tuple[np.ndarray, torch.Tensor]:
    """(B, k, H, W, C) each feature's top images and (B, k, P) its activations on their patches."""
    idx_BK = top_FK[features]
    acts_BNP = acts.dense(torch.tensor(features)).permute(2, 0, 1)
    return images_NHWC[idx_BK.numpy()], acts_BNP[torch.arange(len(features))[:, None], idx_BK]


def _per_pixel(values_BKP: np.ndarray, patch: int) -> np.ndarray:
    """(B, k, H, W, 1): each patch's value spread over its pixels (patches row-major)."""
    b, k, p = values_BKP.shape
    grid = int(round(p ** 0.5))
    spread = np.broadcast_to(values_BKP.reshape(b, k, grid, 1, grid, 1), (b, k, grid, patch, grid, patch))
    return spread.reshape(b, k, grid * patch, grid * patch, 1)


@torch.no_grad()
def compute_activations(states: Callable[[np.ndarray], torch.Tensor], sae: SAE, images_NHWC: np.ndarray,
                        batch: int = 512, width: int = 64) -> PoolActivations:
    """`states(images)` gives the (n, P, D) residual stream the SAE reads. A TopK SAE keeps exactly
    its k latents per token; an SAE without a k (ReLU, JumpReLU, BatchTopK) keeps its `width`
    strongest, which is exact whenever no token has more active latents than that."""
    indices, values = [], []
    for start in tqdm(range(0, len(images_NHWC), batch), desc="SAE activations", leave=False):
        acts = sae.encode(states(images_NHWC[start:start + batch]))
        top = acts.topk(sae.k or min(width, sae.d_sae), dim=-1)
        indices.append(top.indices.int())
        values.append(top.values)
    return PoolActivations(torch.cat(indices), torch.cat(values), sae.d_sae)


def tower_activations(vlm: VLMAdapter, hidden_state: int, sae: SAE, images_NHWC: np.ndarray) -> PoolActivations:
    """The SAE's activations on the patch tokens of tower hidden state `hidden_state` (a token that is
    no patch, like CLS, is dropped), through the steering engine's own tower pass: what a method
    steers is what was measured. Returned on the CPU."""
    engine = SteeringEngine(vlm, hidden_state)
    patches_T = (vlm.token_patches()[:, 0] >= 0).to(vlm.device)
    sae = copy.deepcopy(sae).to(vlm.device)

    def states(batch_NHWC: np.ndarray) -> torch.Tensor:
        return torch.cat(list(engine.tower_states(batch_NHWC, len(batch_NHWC))))[:, patches_T].float()

    acts = compute_activations(states, sae, images_NHWC, batch=max(1, TOKENS_PER_BATCH // int(patches_T.sum())))
    return PoolActivations(acts.indices_NPK.cpu(), acts.values_NPK.cpu(), acts.d_sae)


def cached_activations(parent: Path, key: dict, compute: Callable[[], PoolActivations]) -> PoolActivations:
    """Loads the activations cached under `key` (what produced them), computing them once if absent."""

    def build(dpath: Path) -> dict:
        acts = compute()
        save_file({"indices_NPK": acts.indices_NPK.contiguous(), "values_NPK": acts.values_NPK.contiguous()},
                  str(dpath / FILE))
        return {"d_sae": acts.d_sae, "shape": list(acts.shape)}

    dpath, meta = cached_stage(parent, "activations", key, build)
    tensors = load_file(str(dpath / FILE))
    return PoolActivations(tensors["indices_NPK"], tensors["values_NPK"], meta["d_sae"])
