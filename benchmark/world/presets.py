"""World presets, registered in `WORLDS`: `default` (the README's world, built in minutes on 2 cores)
and `tiny` (tests)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from benchmark.registry import Registry
from benchmark.world.sae_training import SAEConfig
from benchmark.world.scorer_training import ScorerConfig
from benchmark.world.tower import TowerConfig
from benchmark.world.vlm import LMConfig


@dataclass(frozen=True)
class WorldConfig:
    name: str
    seed: int = 0
    """Seed of the images and of every world model except the scorer (which has its own)."""
    image_size: int = 32
    """Image side in pixels; the tower's patch size splits it into a grid of patches."""
    n_train: int = 30_000
    """Images that train the tower, the VLMs and the SAE."""
    n_topk: int = 10_000
    """Images that methods draw their top-activating examples from."""
    n_scoring: int = 5_000
    """Held-out images: ground truth and metrics."""
    tower: TowerConfig = TowerConfig()
    lms: dict[str, LMConfig] = field(default_factory=dict)
    """Language-model sizes, smallest first; all share the tower."""
    sae: SAEConfig = SAEConfig()
    scorer: ScorerConfig = ScorerConfig()
    quality_images: int = 1000
    """Scoring-pool images captioned for the caption-recall report."""
    steering_multipliers: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """Candidate steering coefficients, in units of each feature's mean top activation."""

    def to_dict(self) -> dict:
        return asdict(self)


def _as_world(obj: object) -> WorldConfig:
    if not isinstance(obj, WorldConfig):
        raise TypeError(f"{obj!r} is not a world preset; give a benchmark.world.presets.WorldConfig")
    return obj


WORLDS: Registry[WorldConfig] = Registry("world", entry_point_group="featurebench.worlds", contract=_as_world)
"""World presets by name."""


WORLDS.register("default")(WorldConfig(
    name="default",
    tower=TowerConfig(steps=400, lr=2.5e-3),
    lms={"small": LMConfig(hidden=64, layers=2, steps=1300, lr=3e-3),
         "medium": LMConfig(hidden=128, layers=2, steps=900, lr=2e-3),
         "large": LMConfig(hidden=192, layers=3, steps=560, lr=1.5e-3)},
    sae=SAEConfig(steps=1000),
    scorer=ScorerConfig(steps=320),
))
WORLDS.register("tiny")(WorldConfig(
    name="tiny", n_train=2000, n_topk=500, n_scoring=500,
    tower=TowerConfig(hidden=64, layers=3, steps=150, batch=128),
    lms={"small": LMConfig(hidden=32, layers=1, steps=150, lr=3e-3),
         "large": LMConfig(hidden=64, layers=2, steps=150, lr=3e-3)},
    sae=SAEConfig(layer=2, d_sae=256, k=4, steps=300, batch=512, dead_after=20_000),
    scorer=ScorerConfig(width=64, layers=2, text_width=32, text_layers=1, embed_dim=32, steps=60, batch=128),
    quality_images=200, steering_multipliers=(2.0, 4.0),
))
