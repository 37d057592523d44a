"""The harness's paths: which modules turn a request into a cached result, and their identity in the
cache keys.

A method's code identity (`benchmark.identity.code_identity`) follows the functions it calls by
name, but not the harness behind `ctx.answer(...)` or `ctx.image_means(...)`: the steering engine,
interventions, the adapters, top-image masking and heatmaps, the stores, the scoring context. An
edit there changes every answer and score while the keys stay the same. So each cache key also holds
the identity of the modules on its path, listed here and nowhere else:

- `ACTIVATIONS`: the streamed pass that encodes a pool and the stores it writes; in the keys of the
  activation stores, so also on the two paths below;
- `ANSWERING`: what answers a method (`Context`, the steering engine, interventions, top images,
  explainers), plus the source's VLM adapter module; in every explanation key;
- `SCORING`: what metrics read through `ScoringContext` (scorer embeddings, grids, stores, top
  images, capabilities), plus the adapter module; in every score key.

A module's identity is the sha256 of its file: any edit recomputes (a comment too; recomputing
more than needed is the safe side). A module off a path (the leaderboard, the report, the CLI)
changes no key.
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""Where project modules are read from: the checkout the `benchmark` package was imported from."""

ACTIVATIONS = ("benchmark.activations.passes", "benchmark.activations.stores", "benchmark.numerics", "benchmark.sources.image_pools", "benchmark.sources.source",
               "benchmark.steering.engine", "benchmark.steering.hook", "benchmark.models.sae",
               "benchmark.models.sae_formats", "benchmark.models.adapters", "benchmark.models.adapters.base")
ANSWERING = (*ACTIVATIONS, "benchmark.explaining.context", "benchmark.steering.inputs", "benchmark.steering.interventions",
             "benchmark.activations.top_images", "benchmark.explainers", "benchmark.explainers.endpoint")
SCORING = (*ACTIVATIONS, "benchmark.scoring.context", "benchmark.scoring.metric", "benchmark.activations.grids", "benchmark.activations.embeddings",
           "benchmark.models.scorer", "benchmark.activations.top_images", "benchmark.sources.capabilities")
PATHS = {"activations": ACTIVATIONS, "answering": ANSWERING, "scoring": SCORING}


def module_file(name: str) -> Path:
    """The source file of project module `name` under `ROOT` (a package: its `__init__.py`)."""
    base = ROOT.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def adapter_file(family: str) -> Path:
    """The module defining the VLM family's adapter: a project module under `ROOT`, or a plug-in's file."""
    from benchmark.models.adapters import ADAPTERS

    adapter = ADAPTERS.get(family)
    module = adapter.__module__
    return module_file(module) if module.startswith("benchmark.") else Path(inspect.getsourcefile(adapter))


def path_identity(path: str, family: str | None = None) -> str:
    """12-hex identity of the modules on `path` (a key of `PATHS`) and of the `family` adapter's module."""
    files = [(name, module_file(name)) for name in PATHS[path]]
    if family is not None:
        files.append((f"adapter:{family}", adapter_file(family)))
    h = hashlib.sha256()
    for name, fpath in files:
        h.update(f"\0{name}\0".encode() + fpath.read_bytes())
    return h.hexdigest()[:12]
