"""What every explanation method may use, built once per run over its source: the SAE, the top-k
pool and its cached activations, each feature's scale, the source's capabilities, and `answer`,
the VLM asked through the one steering engine (`benchmark.steering.engine`), world or real.

A method is `explain(ctx: Context, features: list[int]) -> list[str]`, batched over features so the
engine can put many features in one `generate`. It is registered with `@method(name, needs=...)`,
naming the source capabilities it reads (`benchmark.sources.capabilities.NEEDS`); a run on a source
without them is refused before anything is computed.

Shape letters: B rows (features), N images per row, H, W, C pixels, T tower tokens, D tower width,
K top images, P patches, F features.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch

from benchmark.activations import masked_top_images
from benchmark.registry import METHODS
from benchmark.sources.source import Source
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.inputs import empty_image

MethodFn = Callable[["Context", list[int]], list[str]]


def method(name: str, needs: tuple[str, ...] = ()) -> Callable[[MethodFn], MethodFn]:
    """Registers an explanation method; `needs`: the source capabilities it reads."""
    def register(fn: MethodFn) -> MethodFn:
        fn.needs = tuple(needs)
        return METHODS.register(name, module=fn.__module__)(fn)

    return register


def method_needs(fn: MethodFn) -> tuple[str, ...]:
    """What a method declared it needs (a plug-in registered without `@method` needs nothing)."""
    return tuple(getattr(fn, "needs", ()))


@dataclass(frozen=True)
class MethodConfig:
    """Settings the methods read. Part of each explanation's cache key."""

    top_k: int = 5
    """Images shown by top-k and hybrid."""
    empty: str = "white"
    """Empty image for steering: white, black or noise."""
    steering_multiplier: float | None = None
    """Steering coefficient in units of each feature's mean top activation; None: the source's default
    (the world's tuned value), which `Context` fills in, so the cache keys the value used."""
    hybrid_multiplier: float = 1.0
    """Hybrid's coefficient, same units, added only where the feature fires (the paper: 50 vs 200)."""
    batch_size: int = 256
    """Features per generate call."""
    seed: int = 0


class Context:
    def __init__(self, source: Source, config: MethodConfig):
        if config.steering_multiplier is None:
            config = replace(config, steering_multiplier=source.default_multiplier)
        self.source, self.lm, self.config = source, source.lm, config
        self.sae = source.sae()
        self.patch = source.patch

    @cached_property
    def topk_pool(self):
        return self.source.pool("topk")

    @cached_property
    def topk_activations(self):
        return self.source.activations("topk")

    @cached_property
    def top_images(self) -> torch.Tensor:
        """(F, K) each feature's top-k pool images by mean activation, best first."""
        return self.topk_activations.top_images(self.config.top_k)

    @property
    def steering_multiplier(self) -> float:
        return self.config.steering_multiplier

    @cached_property
    def _scales_F(self) -> torch.Tensor:
        return torch.tensor(self.source.scales(), dtype=torch.float32)

    def scales(self, features: list[int]) -> torch.Tensor:
        """Each feature's mean top activation: the unit of steering coefficients."""
        return self._scales_F[features]

    def empty_images(self, n: int) -> np.ndarray:
        """(n, 1, H, W, C): the empty image for every row, one array (rows share memory)."""
        size = self.source.image_size
        return np.broadcast_to(empty_image(size, self.config.empty, self.config.seed), (n, 1, size, size, 3))

    @cached_property
    def engine(self) -> SteeringEngine:
        return SteeringEngine(self.source.vlm, self.source.layer, self.config.batch_size)

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor | None = None,
               positions_BNT: torch.Tensor | None = None) -> list[str]:
        """The VLM's answers, row b showing its N images (1: the describe prompt; several: the shared
        prompt), steered by vectors_BD[b] at the tower tokens where positions_BNT[b] is true (every
        token when None). Rows that all show the same images share the tower prefix."""
        if vectors_BD is None:
            vectors_BD = torch.zeros(len(images_BNHWC), self.sae.d_in)
        prompts, shared = self.source.spec.prompts, images_BNHWC.shape[1] > 1
        prompt, tokens = (prompts.shared if shared else prompts.describe), self.source.max_new_tokens(shared)
        same = positions_BNT is None and (images_BNHWC.strides[0] == 0 or
                                          all(np.array_equal(images_BNHWC[0], row) for row in images_BNHWC[1:]))
        if same:
            return self.engine.answer(list(images_BNHWC[0]), prompt, vectors_BD, None, tokens, prompts.answer_prefix)
        return self.engine.answer_rows(images_BNHWC, prompt, vectors_BD, positions_BNT, tokens, prompts.answer_prefix)

    @cached_property
    def token_patch_T(self) -> torch.Tensor:
        """Row-major patch index of each tower token; -1 for a token that is no patch (CLS)."""
        vlm = self.source.vlm
        rc_T2 = vlm.token_patches()
        return torch.where(rc_T2[:, 0] >= 0, rc_T2[:, 0] * vlm.grid[1] + rc_T2[:, 1], -1)

    def masked_top_images(self, features: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        """The top-k images of each feature, patches where it is inactive blacked out, and where it
        is active as tower token positions (a token that is no patch, like CLS, never is):
        (B, K, H, W, C), (B, K, T)."""
        masked, active_BKP = masked_top_images(self.topk_pool.images_NHWC, self.topk_activations, self.top_images,
                                               features, self.patch)
        patch_T = self.token_patch_T
        return masked, active_BKP[..., patch_T.clamp(min=0)] & (patch_T >= 0)
