"""Where the expensive work runs: in this process (`local`, the default) or on a Ray cluster (`ray`).

A backend only computes. `benchmark.explaining.explain.explain` decides what is missing and is the only
writer of the result store, so the Ray backend reuses the harness's resume logic rather than adding
its own: a shard is Ray's unit of retry (a killed worker's actor is restarted and its shard runs
again), and the driver appends a shard's rows once, when its result arrives. A run whose driver
dies keeps every shard that finished; the next run computes only the rest.

Ray is an optional extra (`pip install 'featurebench[ray]'`); nothing here imports it unless the
`ray` backend is chosen.
"""
from __future__ import annotations

import inspect
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from benchmark.activations.stores import Codes
from benchmark.cache import cache_root
from benchmark.config.method import MethodConfig
from benchmark.explaining.context import COSTS, Context
from benchmark.registry import METHODS, PLUGIN_MODULE, UsageError
from benchmark.sources import open_source
from benchmark.sources.source import Source

ACTIVATION_SHARD = 1024
"""Images per shard of the activation pass, at most; fewer when `SHARD_TOKENS` is reached first."""
SHARD_TOKENS = 2 ** 18
"""Patch tokens per shard of the activation pass at most: a shard's codes travel back to the driver."""


class Backend(Protocol):
    def start(self, source: Source) -> None:
        """Called once the run's source is open, so workers can load it while this process goes on."""

    def explain(self, ctx: Context, name: str, fn, features: list[int]) -> Iterator[Batch]:
        """(features, explanations) pieces covering `features`, in any order."""

    def activation_pass(self, source: Source, split: str) -> Callable[[], Iterator[tuple[int, Codes]]] | None:
        """How to compute a pool's codes, batch by batch in pool order, when its store is not cached
        (None: in this process)."""

    def describe(self) -> dict:
        """What run.json records: the backend and the shard plan it ran."""

    def close(self) -> None: ...


Batch = tuple[list[int], list[str], dict[str, float]]
"""A method batch: its features, their explanations and what each cost (`in_batches`)."""


def in_batches(ctx: Context, fn, features: list[int]) -> Iterator[Batch]:
    """The method on `features`, `batch_size` at a time: the same batches on every backend, so
    backends give the same explanations. With them, what one explanation of the batch cost: the
    batch's answering seconds, tokens and images (`Context.usage`) shared evenly among its features,
    since a method batches its features into shared generate calls."""
    size = ctx.config.batch_size
    for start in range(0, len(features), size):
        chunk = features[start:start + size]
        before = Counter(ctx.usage)
        texts = list(fn(ctx, chunk))
        spent = ctx.usage - before
        yield chunk, texts, {k: spent[k] / len(chunk) for k in COSTS}


class LocalBackend:
    def start(self, source: Source) -> None:
        pass

    def explain(self, ctx: Context, name: str, fn, features: list[int]) -> Iterator[Batch]:
        return in_batches(ctx, fn, features)

    def activation_pass(self, source: Source, split: str) -> None:
        return None

    def describe(self) -> dict:
        return {"name": "local"}

    def close(self) -> None:
        pass


class ShardWorker:
    """A Ray actor: opens the driver's source from its recipe once per worker process (the VLM loads
    on first use, onto the worker's GPU when it has one), then explains shard after shard."""

    def __init__(self, recipe: tuple):
        import methods  # noqa: F401  (registers the built-in methods)

        self.source = open_source(recipe)
        self.contexts: dict[MethodConfig, Context] = {}

    def pid(self) -> int:
        return os.getpid()

    def explain(self, config: MethodConfig, method: str, features: list[int]) -> list[Batch]:
        if config not in self.contexts:
            self.contexts[config] = Context(self.source, config)
        return list(in_batches(self.contexts[config], METHODS.get(method), features))

    def activations(self, split: str, start: int, stop: int) -> list[tuple[int, Codes]]:
        return list(self.source.codes_of(split, start, stop))


class RayBackend:
    """Shards over a pool of `ShardWorker` actors, one per worker (a GPU each when the cluster has
    GPUs, else one CPU each). A shard is `shard_batches` method batches of features, or
    `image_shard` images of the activation pass."""

    def __init__(self, address: str | None = None, workers: int | None = None, shard_batches: int = 4,
                 image_shard: int = ACTIVATION_SHARD):
        try:
            import ray
        except ImportError:
            raise UsageError("--backend ray needs Ray: pip install 'featurebench[ray]'") from None
        self.ray, self.address, self.workers = ray, address, workers
        self.shard_batches, self.image_shard = shard_batches, image_shard
        self.actors: dict[str, list] = {}
        self.plan: list[dict] = []
        self.started_ray = False

    def start(self, source: Source) -> None:
        self._pool(source)  # actors are created asynchronously: they load the source in the background

    def _pool(self, source: Source):
        ray = self.ray
        if not ray.is_initialized():
            # Workers find the world where this process does; a multi-node cluster needs that path shared.
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"FEATUREBENCH_CACHE": str(cache_root().resolve())}})
            self.started_ray = True
        key = source.name
        if key not in self.actors:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            n = self.workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
            actor = ray.remote(ShardWorker).options(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=-1,
                                                    max_task_retries=-1)
            self.actors[key] = [actor.remote(source.recipe) for _ in range(n)]
        return ray.util.ActorPool(self.actors[key])

    def explain(self, ctx: Context, name: str, fn, features: list[int]) -> Iterator[Batch]:
        pool = self._pool(ctx.source)
        size = shard_size(len(features), ctx.config.batch_size, self.shard_batches, len(self.actors[ctx.source.name]))
        shards = [features[i:i + size] for i in range(0, len(features), size)]
        self.plan.append({"method": name, "lm": ctx.lm, "shard_size": size,
                          "shards": [[shard[0], shard[-1], len(shard)] for shard in shards]})
        method = _portable(name, fn)
        results = pool.map_unordered(lambda a, shard: a.explain.remote(ctx.config, method, shard), shards)
        for pieces in self._unwrap(results):
            yield from pieces

    def activation_pass(self, source: Source, split: str) -> Callable[[], Iterator[tuple[int, Codes]]]:
        def batches() -> Iterator[tuple[int, Codes]]:
            n = source.pool_size(split)
            shard = max(1, min(self.image_shard, SHARD_TOKENS // source.patches))
            slices = [(s, min(s + shard, n)) for s in range(0, n, shard)]
            self.plan.append({"activations": split, "shard_size": shard, "shards": [list(s) for s in slices]})
            pool = self._pool(source)
            for codes in self._unwrap(pool.map(lambda a, s: a.activations.remote(split, *s), slices)):
                yield from codes  # in pool order: the store sees the batches a local pass would

        return batches

    def _unwrap(self, results: Iterator) -> Iterator:
        """A worker's own exception (e.g. a UsageError from a method) re-raised as itself."""
        try:
            yield from results
        except self.ray.exceptions.RayTaskError as e:
            raise (e.cause if isinstance(e.cause, Exception) else e) from None

    def describe(self) -> dict:
        return {"name": "ray", "address": self.address, "workers": {w: len(a) for w, a in self.actors.items()},
                "plan": self.plan}

    def close(self) -> None:
        for actors in self.actors.values():
            for actor in actors:
                self.ray.kill(actor)
        self.actors.clear()
        if self.started_ray:
            self.ray.shutdown()


def shard_size(n_features: int, batch_size: int, max_batches: int, workers: int) -> int:
    """Features per shard: whole method batches (so shards batch exactly as a local run does), at
    most `max_batches` of them, and few enough that every worker gets about two shards."""
    batches = math.ceil(n_features / batch_size / (2 * workers))
    return batch_size * max(1, min(max_batches, batches))


def make_backend(name: str, address: str | None = None, workers: int | None = None) -> Backend:
    if name == "local":
        if address or workers:
            raise UsageError("--address and --workers apply to --backend ray only")
        return LocalBackend()
    if name == "ray":
        return RayBackend(address, workers)
    raise UsageError(f"unknown backend {name!r}; available: local, ray")


def _portable(name: str, fn) -> str:
    """How a worker finds the method: its registered name, or for a file plug-in (whose name is not
    registered in a fresh process) the file's absolute path and the function, since a worker's
    working directory is not the driver's."""
    if getattr(fn, "__module__", "").startswith(PLUGIN_MODULE):
        return f"{Path(inspect.getsourcefile(fn)).resolve()}:{fn.__name__}"
    return name
