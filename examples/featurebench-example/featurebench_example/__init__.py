"""An example featurebench plug-in package: one plug-in of every kind, each declared as an entry
point in pyproject.toml and used by name once the package is installed (`pip install .`).

    python -m benchmark --method example-first-word,topk --metrics explanation-length,detection
    python -m benchmark world build --preset example-tiny

The adapter, explainer, generator and segmenter are named in a run config's tables:
`[vlm] family = "example-llava"`, `[explainer] kind = "example-echo"`, `[generator] kind =
"example-solid"`, `[segmenter] kind = "example-everywhere"`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmark.explainers import Answer
from benchmark.explaining.context import method
from benchmark.models.adapters.llava import LlavaAdapter
from benchmark.scoring.context import metric
from benchmark.world.presets import WORLDS

COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "purple": (128, 0, 128), "orange": (255, 140, 0)}


@method("example-first-word")
def first_word(ctx, features: list[int]) -> list[str]:
    """Top-k's answer cut to its first word."""
    from methods.topk import topk

    return [(text.split() or ["nothing"])[0] for text in topk(ctx, features)]


@metric("explanation-length", columns=("explanation_length",), higher_is_better=False)
def explanation_length(ctx, features: list[int], texts: list[str]) -> dict[str, np.ndarray]:
    """Words per explanation: shorter is better (a lower-is-better metric)."""
    return {"explanation_length": np.array([len(t.split()) for t in texts], dtype=np.float64)}


class ExampleLlava(LlavaAdapter):
    """LLaVA under another family name: what a new VLM family's adapter plugs in as."""


@dataclass(frozen=True)
class EchoSettings:
    word: str = "red"
    """What every answer says."""


class EchoExplainer:
    """An explainer that answers every request with one word (a stand-in for a remote VLM)."""

    settings = EchoSettings

    def __init__(self, settings: EchoSettings, cache_dir: Path):
        self.config = settings

    def check(self) -> None:
        pass

    @property
    def identity(self) -> str:
        return f"echo-{self.config.word}"

    def answer(self, images_BNHWC: np.ndarray, prompt: str, max_new_tokens: int, answer_prefix: str) -> list[Answer]:
        return [Answer(self.config.word, 0, 1) for _ in images_BNHWC]


@dataclass(frozen=True)
class SolidSettings:
    noise: float = 0.0
    """Standard deviation of the pixel noise added to the solid colour."""


class SolidGenerator:
    """Draws a text's first colour word as a solid image; None when it names no colour."""

    settings = SolidSettings

    def __init__(self, settings: SolidSettings, image_size: int, cache_dir: Path):
        self.config, self.image_size = settings, image_size

    def check(self) -> None:
        pass

    @property
    def identity(self) -> str:
        return f"solid-{asdict(self.config)}"

    def draw(self, text: str, n: int, seed: int) -> np.ndarray | None:
        colour = next((COLOURS[w] for w in text.lower().split() if w in COLOURS), None)
        if colour is None:
            return None
        rng = np.random.default_rng(seed)
        images = np.broadcast_to(np.array(colour, np.float64), (n, self.image_size, self.image_size, 3))
        return np.clip(images + rng.normal(0, self.config.noise, images.shape), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class EverywhereSettings:
    pass


class EverywhereSegmenter:
    """Every patch shows whatever is named (the trivial segmentation a localization metric should punish)."""

    settings = EverywhereSettings

    def __init__(self, settings: EverywhereSettings, images, patch: int, cache_dir: Path):
        self.images, self.patch = images, patch

    def check(self) -> None:
        pass

    identity = "everywhere"

    def segment(self, text: str, index_I: np.ndarray) -> np.ndarray:
        side = self.images(np.asarray(index_I[:1], np.int64)).shape[1] // self.patch
        return np.ones((len(index_I), side * side), bool)


EXAMPLE_TINY = replace(WORLDS.get("tiny"), name="example-tiny")
"""The tests' tiny world under its own name: a world preset as a package ships one."""
