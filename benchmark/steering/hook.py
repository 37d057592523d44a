"""The steering hook: add `coeff * W_dec[f]` to a vision-tower layer's output (or replace or
clamp, `benchmark.steering.interventions`), per batch row, at chosen token positions.

The hook is registered with `prepend=True` so it runs before transformers' own hooks that record
hidden states: when the steered layer is the one the VLM reads, a plain hook would be a silent
no-op. The vision tower runs once per `generate` (the prefill), so steering touches the prefill only.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from benchmark.steering.interventions import Intervention


@contextmanager
def steer(layer: nn.Module, vectors_BD: torch.Tensor, positions_BT: torch.Tensor | None = None,
          intervention: Intervention = Intervention(), features_B: torch.Tensor | None = None):
    """Within the block, `layer`'s output row b is steered by vectors_BD[b] at the tokens where
    positions_BT[b] is true (every token when None): added by default, or replaced or clamped
    (`benchmark.steering.interventions`; `features_B`: the latent each row clamps). The batch must
    have B rows."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[0] != vectors_BD.shape[0]:
            raise ValueError(f"steering {vectors_BD.shape[0]} rows but the batch has {hidden.shape[0]}")
        hidden = intervention(hidden, vectors_BD, positions_BT, features_B)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = layer.register_forward_hook(hook, prepend=True)
    try:
        yield
    finally:
        handle.remove()


def steered_generate(generate: Callable[[np.ndarray], list[str]], layer: nn.Module, images_BNHWC: np.ndarray,
                     vectors_BD: torch.Tensor, positions_BNT: torch.Tensor | None = None,
                     batch_size: int = 256, intervention: Intervention = Intervention(),
                     features_B: torch.Tensor | None = None) -> list[str]:
    """The steering engine: answers for B rows, batched over features.

    Row b shows its N images and is steered by vectors_BD[b] at the tower tokens where
    positions_BNT[b, n] is true (every token when None); `generate` maps a (b, N, H, W, C) image
    batch to b answers. The tower sees each image as its own row, so each row's vector and
    positions are expanded per image. batch_size = 1 is the one-feature-per-generate loop."""
    n_images = images_BNHWC.shape[1]
    answers: list[str] = []
    for start in range(0, len(vectors_BD), batch_size):
        stop = start + batch_size
        vectors = vectors_BD[start:stop].repeat_interleave(n_images, dim=0)
        positions = None if positions_BNT is None else positions_BNT[start:stop].flatten(0, 1)
        features = None if features_B is None else features_B[start:stop].repeat_interleave(n_images)
        with steer(layer, vectors, positions, intervention, features):
            answers += generate(images_BNHWC[start:stop])
    return answers
