"""Sources: what a run explains (`Source`), opened by a recipe, the same in every process.

    open_source(("models", spec, "llava-1.5-7b"))           # real checkpoints a run config names
    open_source(("world", "default", "large", "seed"))      # the embedded world under the seed protocol

A recipe is a kind registered in `SOURCES` and its arguments; a kind is a function returning a
`Source`. No run names a kind of its own (a run explains real models or a world, and a world is a
plug-in of `featurebench.worlds`), so sources take no entry points. The world is registered
here by name only (`benchmark.sources.world`, imported on first use), the one place outside
`benchmark/world/` that knows it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from benchmark.registry import Registry

if TYPE_CHECKING:
    from benchmark.sources.source import Source

SOURCES: Registry[Callable[..., "Source"]] = Registry("source")
"""Source kinds: callables from a recipe's arguments to a `Source`. Registered by name only, so that
reading a run config (`benchmark.config.models`) imports no model library."""
SOURCES.register_lazy("models", "benchmark.sources.source:open_models")
SOURCES.register_lazy("world", "benchmark.sources.world:open_world")


def open_source(recipe: tuple) -> Source:
    """The source a recipe names: `(kind, *arguments)`."""
    kind, *arguments = recipe
    return SOURCES.get(kind)(*arguments)


__all__ = ["SOURCES", "open_source"]
