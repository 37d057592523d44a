"""One sparse autoencoder class for the architectures real SAEs use at inference.

Keys and shapes follow SAELens (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`) so the
world's SAE and converted foreign ones (see `sae_formats`) share one class. The architectures differ
only in how pre-activations become activations:

- `topk`: the k largest pre-activations per row, ReLU'd; the rest zero.
- `batchtopk`: trained with a top-k over the whole batch; at inference a learned global scalar
  `threshold` replaces it (act = ReLU(pre) where pre > threshold), as dictionary_learning's
  BatchTopK/Matryoshka SAEs and saev's BatchTopK do in eval mode.
- `relu`: ReLU(pre).
- `jumprelu`: like batchtopk with one threshold per latent (`threshold [d_sae]`), as SAELens.

`apply_b_dec_to_input` says whether b_dec is subtracted before encoding (SAELens's flag of the same
name): most SAEs do, Gemma Scope, dictionary_learning's JumpReLU and recent saev checkpoints do not.
On disk (`save`): `cfg.json` + `sae_weights.safetensors`, the SAELens (v6) layout; `sae_formats.load_sae`
reads it back, as it reads every other format.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

ARCHITECTURES = ("topk", "batchtopk", "relu", "jumprelu")


class SAE(nn.Module):
    def __init__(self, d_in: int, d_sae: int, k: int | None = None, architecture: str = "topk",
                 apply_b_dec_to_input: bool = True):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown SAE architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
        if architecture == "topk" and not (isinstance(k, int) and 0 < k <= d_sae):
            raise ValueError(f"a topk SAE needs an integer k in [1, {d_sae}], got {k!r}")
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.architecture, self.apply_b_dec_to_input = architecture, apply_b_dec_to_input
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        if architecture in ("batchtopk", "jumprelu"):
            self.threshold = nn.Parameter(torch.zeros(() if architecture == "batchtopk" else (d_sae,)))

    def pre_activations(self, x_ND: torch.Tensor) -> torch.Tensor:
        """The encoder's affine map, as one fused `linear` (the bias added before rounding, as
        `nn.Linear` encoders compute it: in bf16 a separate add rounds twice)."""
        x_ND = x_ND - self.b_dec if self.apply_b_dec_to_input else x_ND
        return torch.nn.functional.linear(x_ND, self.W_enc.T, self.b_enc)

    def encode(self, x_ND: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre_activations(x_ND))

    def activate(self, pre_NF: torch.Tensor) -> torch.Tensor:
        """Pre-activations to activations, by the architecture's rule."""
        if self.architecture == "topk":  # dictionary_learning's order: ReLU, then the k largest (unsorted)
            top = pre_NF.relu().topk(self.k, dim=-1, sorted=False)  # exact ties (bf16) fall as its kernel picks
            return torch.zeros_like(pre_NF).scatter_(-1, top.indices, top.values)
        if self.architecture == "relu":
            return pre_NF.relu()
        # ReLU(pre) * (pre > t) is both libraries' rule: for t >= 0 it is pre * (pre > t), and an unset
        # (negative) BatchTopK threshold falls back to a plain ReLU.
        return pre_NF.relu() * (pre_NF > self.threshold)

    def near_ties(self, pre_NF: torch.Tensor, relative: float) -> torch.Tensor:
        """(F,) for each latent, the rows whose firing or not rests on a margin below `relative` times
        the compared values' magnitude (at least 1): the choices another machine's rounding may flip.
        TopK: the k-th and (k+1)-th pre-activations that close (both latents count, when either would
        fire), or a kept one that close to 0; the thresholded kinds: a pre-activation that close to
        its threshold (0 for a ReLU)."""
        if self.architecture == "topk":
            top = pre_NF.topk(min(self.k + 1, self.d_sae), dim=-1)
            near_NX = top.values[:, :self.k].abs() < relative
            if self.k < self.d_sae:
                kth, next_ = top.values[:, self.k - 1], top.values[:, self.k]
                tie_N = (kth - next_ < relative * kth.abs().clamp(min=1)) & (kth > 0)
                near_NX = torch.cat([near_NX[:, :-1], (near_NX[:, -1] | tie_N)[:, None], tie_N[:, None]], 1)
            latents = top.indices[near_NX]
        else:
            threshold = torch.zeros(()) if self.architecture == "relu" else self.threshold.clamp(min=0)
            latents = ((pre_NF - threshold).abs() < relative * threshold.abs().clamp(min=1)).nonzero()[:, 1]
        return torch.bincount(latents.cpu(), minlength=self.d_sae)

    def decode(self, acts_NF: torch.Tensor) -> torch.Tensor:
        return acts_NF @ self.W_dec + self.b_dec

    def forward(self, x_ND: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x_ND))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    def config(self) -> dict:
        """What, besides the tensors, it takes to rebuild this SAE."""
        return {"architecture": self.architecture, "d_in": self.d_in, "d_sae": self.d_sae, "k": self.k,
                "apply_b_dec_to_input": self.apply_b_dec_to_input}

    def save(self, dpath: Path, hidden_state: int | None = None) -> None:
        """The SAELens layout; `hidden_state` (as transformers counts them) is written the way SAELens
        names it, `metadata.hook_name` = `blocks.{L-1}.hook_resid_post` (the output of block L - 1)."""
        dpath.mkdir(parents=True, exist_ok=True)
        cfg = self.config()
        if hidden_state is not None:
            hook = f"blocks.{hidden_state - 1}.hook_resid_post" if hidden_state else "blocks.0.hook_resid_pre"
            cfg["metadata"] = {"hook_name": hook}
        (dpath / "cfg.json").write_text(json.dumps(cfg, indent=1))
        save_file({n: p.detach().contiguous() for n, p in self.state_dict().items()},
                  str(dpath / "sae_weights.safetensors"))


def random_like(sae: SAE, seed: int) -> SAE:
    """A random SAE of the same kind, shape and sparsity as `sae`: the sanity control that asks
    whether a metric can tell a trained SAE's features from directions that mean nothing (Korznikov
    et al. 2026 found automated interpretability barely can). Decoder rows are random unit vectors
    drawn on the CPU from `seed` (the same seed gives the same SAE on every machine); the encoder is
    tied to them (W_enc = W_dec^T) with a zero b_enc, as a random SAE is built in that paper; b_dec
    is the trained one's, so inputs are centred alike; a TopK SAE keeps its k, a threshold kind
    (batchtopk, jumprelu) its architecture and threshold, and `apply_b_dec_to_input` is kept."""
    generator = torch.Generator().manual_seed(seed)
    W_dec_FD = torch.randn(sae.d_sae, sae.d_in, generator=generator, dtype=torch.float64)
    W_dec_FD = W_dec_FD / W_dec_FD.norm(dim=-1, keepdim=True)
    out = SAE(sae.d_in, sae.d_sae, sae.k, sae.architecture, sae.apply_b_dec_to_input)
    with torch.no_grad():
        dtype = sae.W_dec.dtype
        out.W_dec.copy_(W_dec_FD.to(dtype))
        out.W_enc.copy_(W_dec_FD.T.to(dtype))
        out.b_enc.zero_()
        out.b_dec.copy_(sae.b_dec)
        if sae.architecture in ("batchtopk", "jumprelu"):
            out.threshold.copy_(sae.threshold)
    return out.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype).eval().requires_grad_(sae.W_dec.requires_grad)


TopKSAE = SAE  # the world's name for it: `TopKSAE(d_in, d_sae, k)` is a topk SAE


def fraction_of_variance_explained(x_ND: torch.Tensor, recon_ND: torch.Tensor) -> float:
    """1 - SSE / SST, with SST around the per-dimension mean (the mean-reconstruction baseline)."""
    sse = (x_ND - recon_ND).pow(2).sum()
    sst = (x_ND - x_ND.mean(0)).pow(2).sum()
    return float(1 - sse / sst)
