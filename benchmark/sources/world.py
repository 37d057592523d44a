"""The embedded world as a source: the one module outside `benchmark/world/` that imports it.

`open_world` builds the preset (or loads it from the cache) and reads its files for one LM size as
any user's models are read (`benchmark.sources.Source`), with the world's capabilities: ground
truth, its renderer as the generator, its exact masks as the segmenter, its concept words. The
command line's `world build` and `world ship` reach shipped versions through here too.
"""
from __future__ import annotations

from dataclasses import replace
from functools import cached_property

import pandas as pd

from benchmark.sources.source import Source
from benchmark.world.build import World, build_world, trained_stages
from benchmark.world.groundtruth import concept_patch_masks, dissect
from benchmark.world.shipped import differences, shipped_dir, versions, write
from benchmark.world.truth import WorldTruth

__all__ = ["build_world", "differences", "open_world", "shipped_dir", "trained_stages", "versions", "write"]


def open_world(preset: str = "default", lm: str | None = None, protocol: str | None = None,
               random_sae: int | None = None) -> Source:
    """The world `preset`'s source for LM size `lm` (default: its largest), under `protocol`; with
    `random_sae` a seed, the same source with its SAE replaced by a random one (`random_world_source`)."""
    world = build_world(preset)
    source = world.source(lm or list(world.config.lms)[-1], protocol=protocol)
    return source if random_sae is None else random_world_source(world, source, random_sae)


def random_world_source(world: World, trained: Source, seed: int) -> Source:
    """`trained` with its SAE replaced by a random one of the same kind and shape (`[sae] random`),
    named `<world>+random-sae-<seed>`, with the world's tuned steering multiplier and its generator,
    segmenter and words. The world's ground truth labels the trained SAE's latents, so the random
    SAE's are dissected the same way from its own activations (`DissectedTruth`): its rows then carry
    honest concepts and `aligned` flags, and the oracle runs on it as on the trained SAE."""
    spec = world.models_config(trained.lm)
    source = Source(replace(spec, sae=replace(spec.sae, random=seed)), trained.lm, trained.name, trained.root,
                    trained.capabilities, trained.default_multiplier, recipe=(*trained.recipe, seed),
                    protocol=trained.protocol)
    if source.capabilities.groundtruth is not None:
        truth = DissectedTruth(source, world)
        source.capabilities = replace(source.capabilities, groundtruth=truth)
    return source


class DissectedTruth:
    """A source's ground truth dissected from its own scoring activations, as the world's build
    dissects its trained SAE (`benchmark.world.groundtruth.dissect`); computed on first use, since it
    needs the activation pass (cached like every other)."""

    def __init__(self, source: Source, world: World):
        self.source, self.world = source, world

    @cached_property
    def truth(self) -> WorldTruth:
        acts_NPF = self.source.activations("scoring").dense_NPF()
        return WorldTruth(dissect(acts_NPF, concept_patch_masks(self.world.pool("scoring"), self.world.patch)))

    def table(self) -> pd.DataFrame:
        return self.truth.table()

    def phrase(self, feature: int) -> str | None:
        return self.truth.phrase(feature)

    def names(self, text: str, feature: int) -> float:
        return self.truth.names(text, feature)

    def rivals(self, feature: int) -> list[str]:
        return self.truth.rivals(feature)
