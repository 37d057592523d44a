"""A TopK sparse autoencoder in the SAELens layout, and its own on-disk format.

Keys and shapes follow SAELens (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`) so
real SAEs and the world's share one class. On disk: `cfg.json` + `sae_weights.safetensors`.
Decoder rows are unit-norm, so a latent's activation is its contribution's length in the residual.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class TopKSAE(nn.Module):
    def __init__(self, d_in: int, d_sae: int, k: int):
        super().__init__()
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_activations(self, x_ND: torch.Tensor) -> torch.Tensor:
        return (x_ND - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x_ND: torch.Tensor) -> torch.Tensor:
        """Keeps the k largest pre-activations per row (ReLU'd); the rest are zero."""
        pre = self.pre_activations(x_ND)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())

    def decode(self, acts_NF: torch.Tensor) -> torch.Tensor:
        return acts_NF @ self.W_dec + self.b_dec

    def forward(self, x_ND: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x_ND))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def save(self, dpath: Path, **extra) -> None:
        dpath.mkdir(parents=True, exist_ok=True)
        cfg = {"architecture": "topk", "d_in": self.d_in, "d_sae": self.d_sae, "k": self.k, **extra}
        (dpath / "cfg.json").write_text(json.dumps(cfg, indent=1))
        save_file({n: p.detach().contiguous() for n, p in self.named_parameters()}, str(dpath / "sae_weights.safetensors"))

    @classmethod
    def load(cls, dpath: Path) -> tuple["TopKSAE", dict]:
        cfg = json.loads((dpath / "cfg.json").read_text())
        sae = cls(cfg["d_in"], cfg["d_sae"], cfg["k"])
        sae.load_state_dict(load_file(str(dpath / "sae_weights.safetensors")))
        return sae.eval().requires_grad_(False), cfg


def fraction_of_variance_explained(x_ND: torch.Tensor, recon_ND: torch.Tensor) -> float:
    """1 - SSE / SST, with SST around the per-dimension mean (the mean-reconstruction baseline)."""
    sse = (x_ND - recon_ND).pow(2).sum()
    sst = (x_ND - x_ND.mean(0)).pow(2).sum()
    return float(1 - sse / sst)
