"""What every explanation method may use, built once per run: the VLM of the chosen LM size, the
SAE, the top-k pool and its cached activations, ground truth where the world has it, and the
steering engine bound to the SAE's layer."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from benchmark.activations import masked_top_images
from benchmark.registry import UsageError
from benchmark.steering import steered_generate
from benchmark.world.build import World
from benchmark.world.quality import empty_image
from benchmark.world.vlm import generate


@dataclass(frozen=True)
class MethodConfig:
    """Settings the methods read. Part of each explanation's cache key."""

    top_k: int = 5
    """Images shown by top-k and hybrid."""
    empty: str = "white"
    """Empty image for steering: white, black or noise."""
    steering_multiplier: float | None = None
    """Steering coefficient in units of each feature's mean top activation; None: the world's tuned value."""
    hybrid_multiplier: float = 1.0
    """Hybrid's coefficient, same units, added only where the feature fires (the paper: 50 vs 200)."""
    batch_size: int = 256
    """Features per generate call."""
    seed: int = 0


class Context:
    def __init__(self, world: World, lm: str, config: MethodConfig):
        if lm not in world.config.lms:
            raise UsageError(f"unknown LM size {lm!r}; this world has {', '.join(world.config.lms)}")
        self.world, self.lm, self.config = world, lm, config
        self.vlm = world.vlm(lm)
        self.tokenizer = world.tokenizer
        self.sae = world.sae()
        self.layer = self.vlm.model.vision_tower.encoder.layers[world.sae_layer - 1]
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
        return m if m is not None else float(self.world.report()["steering_multiplier"][self.lm])

    def scales(self, features: list[int]) -> torch.Tensor:
        """Each feature's mean top activation: the unit of steering coefficients."""
        return torch.tensor(self.groundtruth.scale.to_numpy()[features], dtype=torch.float32)

    def empty_images(self, n: int) -> np.ndarray:
        size = self.world.config.image_size
        return np.broadcast_to(empty_image(size, self.config.empty, self.config.seed), (n, 1, size, size, 3))

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor | None = None,
               positions_BNT: torch.Tensor | None = None) -> list[str]:
        """The VLM's answers (1 image: describe prompt; several: top-k prompt), optionally steered."""
        if vectors_BD is None:
            vectors_BD = torch.zeros(len(images_BNHWC), self.sae.d_in)
        return steered_generate(lambda batch: generate(self.vlm, self.tokenizer, batch), self.layer, images_BNHWC,
                                vectors_BD, positions_BNT, self.config.batch_size)

    def masked_top_images(self, features: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        """The top-k images of each feature, patches where it is inactive blacked out, and where it
        is active as tower token positions (CLS first, never active): (B, k, H, W, C), (B, k, 1 + P)."""
        masked, active_BKP = masked_top_images(self.topk_pool.images_NHWC, self.topk_activations, self.top_images,
                                               features, self.patch)
        b, k, _ = active_BKP.shape
        return masked, torch.cat([torch.zeros(b, k, 1, dtype=torch.bool), active_BKP], dim=2)
