"""The embedded world as a source: the one module outside `benchmark/world/` that imports it.

`open_world` builds the preset (or loads it from the cache) and reads its files for one LM size as
any user's models are read (`benchmark.sources.Source`), with the world's capabilities: ground
truth, its renderer as the generator, its exact masks as the segmenter, its concept words. The
command line's `world build` and `world ship` reach shipped versions through here too.
"""
from __future__ import annotations

from benchmark.sources.source import Source
from benchmark.world.build import build_world, trained_stages
from benchmark.world.shipped import differences, shipped_dir, versions, write

__all__ = ["build_world", "differences", "open_world", "shipped_dir", "trained_stages", "versions", "write"]


def open_world(preset: str = "default", lm: str | None = None, protocol: str | None = None) -> Source:
    """The world `preset`'s source for LM size `lm` (default: its largest), under `protocol`."""
    world = build_world(preset)
    return world.source(lm or list(world.config.lms)[-1], protocol=protocol)
