"""How a steering vector changes a tower hidden state at the chosen tokens: the one formula the
engine and the reference hook both apply.

- `add` (the seed paper's default): h + v. With a relative coefficient, v = multiplier × the
  feature's mean top activation × its decoder row; with an absolute one, v = coeff × the unit
  decoder direction, so |v| = coeff (the paper's 200 and 50 on unit-norm rows).
- `replace` (the paper's code, `intervention_type="replacement"`): h becomes v.
- `clamp` (Pach et al.): the latent's code c(h) is set to a value a at each token by adding
  (a − c(h)) × its decoder row; v = a × the decoder row, so the state is h + v − c(h) × row.
  c(h) is the SAE's own encoding of the token (a TopK latent outside the token's top k is 0). A
  row that steers no latent (the random-direction control) is added.

Shape letters: the key in `benchmark`'s package docstring.
"""
from __future__ import annotations

import torch

from benchmark.config.method import INTERVENTIONS
from benchmark.models.sae import SAE


def intervene(hidden_nTD: torch.Tensor, vectors_nD: torch.Tensor, positions_nT: torch.Tensor | None, kind: str = "add",
              codes_nT: torch.Tensor | None = None, rows_nD: torch.Tensor | None = None) -> torch.Tensor:
    """The steered state: `kind` applied at the tokens where positions_nT is true (every token when
    None). Clamp reads codes_nT (the latent's code at each token) and rows_nD (its decoder row);
    vectors, codes and rows are cast to the state's dtype first, as a hook on a bf16 tower would."""
    mask_nT1 = torch.ones_like(hidden_nTD[..., :1]) if positions_nT is None else \
        positions_nT.to(hidden_nTD.device, hidden_nTD.dtype)[..., None]
    vectors_n1D = vectors_nD.to(hidden_nTD.device, hidden_nTD.dtype)[:, None, :]
    if kind == "add":
        return hidden_nTD + mask_nT1 * vectors_n1D
    if kind == "replace":
        return hidden_nTD + mask_nT1 * (vectors_n1D - hidden_nTD)
    if kind == "clamp":
        if codes_nT is None or rows_nD is None:
            raise ValueError("clamp needs each token's code and the latent's decoder row")
        codes_nT1 = codes_nT.to(hidden_nTD.device, hidden_nTD.dtype)[..., None]
        rows_n1D = rows_nD.to(hidden_nTD.device, hidden_nTD.dtype)[:, None, :]
        return hidden_nTD + mask_nT1 * (vectors_n1D - codes_nT1 * rows_n1D)
    raise ValueError(f"unknown intervention {kind!r}; choose {', '.join(INTERVENTIONS)}")


class Intervention:
    """One kind of intervention over an SAE: what the engine and the hook call per batch of rows."""

    def __init__(self, kind: str = "add", sae: SAE | None = None):
        if kind not in INTERVENTIONS:
            raise ValueError(f"unknown intervention {kind!r}; choose {', '.join(INTERVENTIONS)}")
        if kind == "clamp" and sae is None:
            raise ValueError("clamp sets an SAE latent's code: it needs the SAE")
        self.kind, self.sae = kind, sae

    def __call__(self, hidden_nTD: torch.Tensor, vectors_nD: torch.Tensor, positions_nT: torch.Tensor | None,
                 features_n: torch.Tensor | None = None, codes_nT: torch.Tensor | None = None) -> torch.Tensor:
        """`features_n`: the latent each row clamps (clamp only; None: every row is added). `codes_nT`:
        those latents' codes when the caller computed them once for shared images."""
        if self.kind != "clamp":
            return intervene(hidden_nTD, vectors_nD, positions_nT, self.kind)
        if features_n is None:
            return intervene(hidden_nTD, vectors_nD, positions_nT, "add")
        if codes_nT is None:
            codes_nT = latent_codes(self.sae, hidden_nTD, features_n)
        return intervene(hidden_nTD, vectors_nD, positions_nT, "clamp", codes_nT, self.sae.W_dec[features_n])

    def shared_codes(self, prefix_NTD: torch.Tensor, features_b: torch.Tensor | None) -> torch.Tensor | None:
        """(b·N, T) codes of b rows' latents over N shared images, encoded once for all rows (row-major
        as the engine expands rows × images); None when nothing is clamped."""
        if self.kind != "clamp" or features_b is None:
            return None
        codes_NTb = torch.stack([self.sae.encode(state_TD.float())[:, features_b] for state_TD in prefix_NTD])
        return codes_NTb.permute(2, 0, 1).flatten(0, 1)


@torch.no_grad()
def latent_codes(sae: SAE, hidden_nTD: torch.Tensor, features_n: torch.Tensor) -> torch.Tensor:
    """(n, T): row i's latent features_n[i] as the SAE encodes each token of row i; one row at a
    time, so the (T, F) codes never exist for more than one image."""
    return torch.stack([sae.encode(state_TD.float())[:, f] for state_TD, f in zip(hidden_nTD, features_n.tolist())])
