"""The steering hook: add `coeff * W_dec[f]` to a vision-tower layer's output, per batch row, at
chosen token positions.

The hook is registered with `prepend=True` so it runs before transformers' own hooks that record
hidden states: when the steered layer is the one the VLM reads, a plain hook would be a silent
no-op. The vision tower runs once per `generate` (the prefill), so steering touches the prefill only.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def steer(layer: nn.Module, vectors_BD: torch.Tensor, positions_BT: torch.Tensor | None = None):
    """Within the block, `layer`'s output row b gains vectors_BD[b] at the tokens where
    positions_BT[b] is true (every token when None). The batch must have B rows."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[0] != vectors_BD.shape[0]:
            raise ValueError(f"steering {vectors_BD.shape[0]} rows but the batch has {hidden.shape[0]}")
        delta = vectors_BD[:, None, :].to(hidden.dtype)
        if positions_BT is not None:
            delta = delta * positions_BT[:, :, None].to(hidden.dtype)
        hidden = hidden + delta
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = layer.register_forward_hook(hook, prepend=True)
    try:
        yield
    finally:
        handle.remove()
