"""What every explanation method may use, built once per run: the VLM that answers (a `Speaker`),
the SAE, the top-k pool and its cached activations, ground truth where the source has it, and the
steering engine bound to the SAE's layer.

A run's source (`Models`) is the embedded world (`World`) or real checkpoints
(`benchmark.real_models.RealModels`); both contexts read only what `Models` names, so methods and
metrics run unchanged on either. The one difference, the VLM, comes from `speaker`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from benchmark.activations import PoolActivations, masked_top_images
from benchmark.models.sae import SAE
from benchmark.models.scorer import Scorer
from benchmark.registry import UsageError
from benchmark.steering import steered_generate
from benchmark.world.build import World
from benchmark.world.quality import empty_image
from benchmark.world.vlm import generate

GROUNDTRUTH_METHODS = frozenset({"oracle"})
"""Built-in methods that read the concepts in `ctx.groundtruth`: refused on a source without them."""


class Models(Protocol):
    """A run's source, as both contexts read it. `World` is one; any other also has `speaker(lm)`."""

    root: Path
    """Cache root: explanation and score stores live under it."""
    dirs: dict[str, Path]
    """Role -> a directory whose name identifies what fills it (`vlm-<lm>`, `sae`, ...): cache keys use the names."""
    patch: int
    """Pixels per patch side in the pools' images."""

    def sae(self) -> SAE: ...

    def pool(self, split: str) -> Any:
        """`topk` or `scoring`: an object with `images_NHWC`."""

    def activations(self, split: str, compute: Callable[[], PoolActivations] | None = None) -> PoolActivations: ...

    def groundtruth(self) -> pd.DataFrame:
        """One row per feature: `scale` (its mean top activation) and the ground-truth columns (empty
        without ground truth)."""

    def scorer(self) -> Scorer: ...


class Speaker(Protocol):
    """The VLM a context asks questions, steered at the SAE's layer."""

    image_size: int
    """Side of the square images it is shown (the pools' and the empty image's)."""
    default_multiplier: float
    """Steering multiplier when the method config sets none."""
    token_patch_T: torch.Tensor
    """Row-major patch index of each tower token at the SAE's layer; -1 for a token that is no patch (CLS)."""

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor, positions_BNT: torch.Tensor | None,
               batch_size: int) -> list[str]:
        """B answers (1 image per row: the describe prompt; several: the shared prompt)."""


@dataclass(frozen=True)
class MethodConfig:
    """Settings the methods read. Part of each explanation's cache key."""

    top_k: int = 5
    """Images shown by top-k and hybrid."""
    empty: str = "white"
    """Empty image for steering: white, black or noise."""
    steering_multiplier: float | None = None
    """Steering coefficient in units of each feature's mean top activation; None: the source's default
    (the world's tuned value)."""
    hybrid_multiplier: float = 1.0
    """Hybrid's coefficient, same units, added only where the feature fires (the paper: 50 vs 200)."""
    batch_size: int = 256
    """Features per generate call."""
    seed: int = 0


class WorldSpeaker:
    """The world's VLM of one LM size: the steering hook around its own `generate`."""

    def __init__(self, world: World, lm: str):
        if lm not in world.config.lms:
            raise UsageError(f"unknown LM size {lm!r}; this world has {', '.join(world.config.lms)}")
        self.world, self.lm = world, lm
        self.image_size = world.config.image_size
        self.default_multiplier = float(world.report()["steering_multiplier"][lm])
        self.token_patch_T = torch.arange(-1, (world.config.image_size // world.patch) ** 2)  # CLS first

    @cached_property
    def vlm(self):
        """Loaded on first use: a run whose answers come from workers or the cache never loads it."""
        return self.world.vlm(self.lm)

    @cached_property
    def tokenizer(self):
        return self.world.tokenizer

    @cached_property
    def layer(self):
        return self.vlm.model.vision_tower.encoder.layers[self.world.sae_layer - 1]

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor, positions_BNT: torch.Tensor | None,
               batch_size: int) -> list[str]:
        return steered_generate(lambda batch: generate(self.vlm, self.tokenizer, batch), self.layer, images_BNHWC,
                                vectors_BD, positions_BNT, batch_size)


def speaker(world: Models, lm: str) -> Speaker:
    """The VLM that answers: the world's LM of that size, or the source's own."""
    return WorldSpeaker(world, lm) if isinstance(world, World) else world.speaker(lm)


class Context:
    def __init__(self, world: Models, lm: str, config: MethodConfig):
        self.world, self.lm, self.config = world, lm, config
        self.speaker = speaker(world, lm)
        self.sae = world.sae()
        self.patch = world.patch

    @cached_property
    def topk_pool(self):
        return self.world.pool("topk")

    @cached_property
    def topk_activations(self):
        return self.world.activations("topk")

    @cached_property
    def top_images(self) -> torch.Tensor:
        return self.topk_activations.top_images(self.config.top_k)

    @cached_property
    def groundtruth(self):
        return self.world.groundtruth()

    @property
    def steering_multiplier(self) -> float:
        m = self.config.steering_multiplier
        return m if m is not None else self.speaker.default_multiplier

    def scales(self, features: list[int]) -> torch.Tensor:
        """Each feature's mean top activation: the unit of steering coefficients."""
        return torch.tensor(self.groundtruth.scale.to_numpy()[features], dtype=torch.float32)

    def empty_images(self, n: int) -> np.ndarray:
        size = self.speaker.image_size
        return np.broadcast_to(empty_image(size, self.config.empty, self.config.seed), (n, 1, size, size, 3))

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor | None = None,
               positions_BNT: torch.Tensor | None = None) -> list[str]:
        """The VLM's answers (1 image: describe prompt; several: top-k prompt), optionally steered."""
        if vectors_BD is None:
            vectors_BD = torch.zeros(len(images_BNHWC), self.sae.d_in)
        return self.speaker.answer(images_BNHWC, vectors_BD, positions_BNT, self.config.batch_size)

    def masked_top_images(self, features: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        """The top-k images of each feature, patches where it is inactive blacked out, and where it
        is active as tower token positions (a token that is no patch, like CLS, never is):
        (B, k, H, W, C), (B, k, T)."""
        masked, active_BKP = masked_top_images(self.topk_pool.images_NHWC, self.topk_activations, self.top_images,
                                               features, self.patch)
        patch_T = self.speaker.token_patch_T
        return masked, active_BKP[..., patch_T.clamp(min=0)] & (patch_T >= 0)
