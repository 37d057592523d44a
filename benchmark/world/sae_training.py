"""Training the world's TopK SAE on one tower layer's patch tokens (Gao et al. 2024 recipe: TopK,
decoder rows renormalised each step, an AuxK loss that gives dead latents gradient)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from benchmark.models.sae import TopKSAE
from benchmark.world.training import adamw_with_schedule, batches


@dataclass(frozen=True)
class SAEConfig:
    layer: int = 3
    """Tower hidden-state index the SAE reads (hidden_states[layer] = output of encoder layer layer-1)."""
    d_sae: int = 1024
    """Number of latents."""
    k: int = 8
    """Active latents per token."""
    steps: int = 3000
    batch: int = 2048
    lr: float = 2e-3
    aux_k: int = 64
    """Dead latents used by the AuxK loss."""
    dead_after: int = 100_000
    """A latent that has not fired for this many tokens counts as dead."""


def train_sae(x_ND: torch.Tensor, cfg: SAEConfig, seed: int) -> TopKSAE:
    torch.manual_seed(seed)
    d_in = x_ND.shape[1]
    sae = TopKSAE(d_in, cfg.d_sae, cfg.k)
    with torch.no_grad():  # latents start at data points, so few are dead from the outset
        sae.b_dec.copy_(x_ND.median(0).values)
        sae.W_dec.copy_(x_ND[torch.randperm(len(x_ND))[:cfg.d_sae]] - sae.b_dec)
        sae.normalize_decoder()
        sae.W_enc.copy_(sae.W_dec.T)
    opt, sched = adamw_with_schedule(sae.parameters(), cfg.lr, cfg.steps, warmup=100, weight_decay=0.0)
    since_fired = torch.zeros(cfg.d_sae)
    rng = np.random.default_rng(seed)
    for idx in tqdm(batches(len(x_ND), cfg.batch, cfg.steps, rng), total=cfg.steps, desc="sae"):
        x = x_ND[idx]
        pre = sae.pre_activations(x)
        top = pre.topk(cfg.k, dim=-1)
        acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        recon = sae.decode(acts)
        err = x - recon
        loss = err.pow(2).sum(-1).mean() / x.var(0).sum()
        fired = (acts > 0).any(0)
        since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + len(idx))
        dead = since_fired > cfg.dead_after
        if dead.any():  # AuxK: dead latents try to reconstruct what the live ones missed
            aux_pre = pre.masked_fill(~dead, float("-inf"))
            aux_top = aux_pre.topk(min(cfg.aux_k, int(dead.sum())), dim=-1)
            aux_acts = torch.zeros_like(pre).scatter_(-1, aux_top.indices, aux_top.values.relu())
            aux_recon = aux_acts @ sae.W_dec
            loss = loss + (err.detach() - aux_recon).pow(2).sum(-1).mean() / x.var(0).sum() / 32
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        sae.normalize_decoder()
    return sae.eval().requires_grad_(False)
