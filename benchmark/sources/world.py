"""The embedded world as a source: the one module outside `benchmark/world/` that imports it.

`open_world` builds the preset (or loads it from the cache) and reads its files for one LM size as
any user's models are read (`benchmark.sources.Source`), with the world's capabilities: ground
truth, its renderer as the generator, its exact masks as the segmenter, its concept words.
"""
from __future__ import annotations

from benchmark.sources.source import Source
from benchmark.world.build import build_world

__all__ = ["build_world", "open_world"]


def open_world(preset: str = "default", lm: str | None = None) -> Source:
    """The world `preset`'s source for LM size `lm` (default: its largest)."""
    world = build_world(preset)
    return world.source(lm or list(world.config.lms)[-1])
