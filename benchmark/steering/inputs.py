"""What steering is given besides a feature's direction: the empty image it is shown, and the random
directions a control steers with."""
from __future__ import annotations

import numpy as np
import torch


def empty_image(size: int, kind: str = "white", seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: white (the paper's blank image), black, or uniform noise."""
    if kind == "white":
        return np.full((size, size, 3), 255, np.uint8)
    if kind == "black":
        return np.zeros((size, size, 3), np.uint8)
    if kind == "noise":
        return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    raise ValueError(f"unknown empty image {kind!r}; choose white, black or noise")


def random_directions(n: int, d: int, seed: int) -> torch.Tensor:
    """(n, d) unit vectors: Gaussian directions drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g)
    return v / v.norm(dim=1, keepdim=True)
