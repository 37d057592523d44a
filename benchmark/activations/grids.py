"""Mapping per-patch values between two square patch grids over the same image (the scorer's and the
tower's: 16 x 16 for ViT-L/14 at 224 px against 24 x 24 for CLIP-L/336, 4 x 4 against 64 x 64, ...).

The rule is area-weighted resampling: a target patch's value is the mean of the source patches'
values weighted by the area each shares with it. It is separable, one (target, source) matrix of
overlap lengths per axis, rows summing to 1; a grid mapped onto itself is the identity, exactly.
A token list with one token more than a square (a CLS token in front) drops that first token.
"""
from __future__ import annotations

import math

import torch


def grid_of(tokens: int) -> tuple[int, int]:
    """(side, leading tokens to drop) of a row of patch tokens: a square, or a square after a CLS."""
    for lead in (0, 1):
        side = math.isqrt(tokens - lead)
        if side * side == tokens - lead and side > 0:
            return side, lead
    raise ValueError(f"{tokens} tokens are not a square grid of patches, with or without a CLS token")


def overlap(target: int, source: int) -> torch.Tensor:
    """(target, source): the share of target cell i's length covered by source cell j on [0, 1]."""
    t = torch.arange(target + 1, dtype=torch.float64) / target
    s = torch.arange(source + 1, dtype=torch.float64) / source
    shared = (torch.minimum(t[1:, None], s[None, 1:]) - torch.maximum(t[:-1, None], s[None, :-1])).clamp(min=0)
    return shared * target


def resample(values_NX: torch.Tensor, target: int) -> torch.Tensor:
    """(N, target**2): each row of source-grid values (optionally after a CLS) on a target x target grid."""
    side, lead = grid_of(values_NX.shape[1])
    grid_NSS = values_NX[:, lead:].reshape(len(values_NX), side, side)
    if side == target:
        return grid_NSS.reshape(len(values_NX), -1)
    weights = overlap(target, side).to(values_NX.dtype)
    return (weights @ grid_NSS @ weights.T).reshape(len(values_NX), -1)
