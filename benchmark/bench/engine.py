"""`python -m benchmark bench`: the steering engine every run answers through, against the
one-feature-per-generate loop (the steering hook around the checkpoint's own `generate`, one feature
at a time), in the same run, on the same source, features and prompts. The loop runs on fewer
features (it is the slow side); both figures are features per second. By default the source is the
embedded world; the same code times any source a recipe names."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from benchmark.config.method import MethodConfig
from benchmark.config.resolve import resolve
from benchmark.explaining.context import Context
from benchmark.sources import open_source
from benchmark.steering.hook import steered_generate


def _features_per_s(run: Callable[[list[int]], list[str]], features: list[int]) -> float:
    start = time.perf_counter()
    run(features)
    return len(features) / (time.perf_counter() - start)


def _rows(ctx: Context, name: str, features: list[int]) -> tuple[np.ndarray, torch.Tensor, torch.Tensor | None]:
    """What the method gives the VLM: images, steering vectors and positions (None: every token)."""
    if name == "steering":
        return ctx.empty_images(len(features)), ctx.steering_vectors(features), None
    images, positions = ctx.shown_top_images(features)
    return images, ctx.steering_vectors(features, "hybrid"), positions


def bench(recipe: tuple = ("world", "default", "large"), engine_features: int = 512, loop_features: int = 32,
          batch_size: int = 256) -> dict:
    source = open_source(recipe)
    ctx = Context(source, resolve(MethodConfig(batch_size=batch_size), source.protocol))
    vlm, prompts = source.vlm, source.spec.prompts
    features = list(range(min(engine_features, ctx.sae.d_sae)))
    ctx.shown_top_images(features[:2])  # load the pool and activations outside the timings
    report = {"source": source.name, "lm": source.lm, "batch_size": batch_size}
    for name in ("steering", "hybrid"):
        shared = name == "hybrid"
        prompt, tokens = (prompts.shared if shared else prompts.describe), source.max_new_tokens(shared)

        def engine(fs: list[int]) -> list[str]:
            return ctx.answer(*_rows(ctx, name, fs))

        def loop(fs: list[int]) -> list[str]:
            generate = lambda batch: vlm.generate(batch, prompt, tokens, prompts.answer_prefix)  # noqa: E731
            return steered_generate(generate, vlm.layer(source.layer), *_rows(ctx, name, fs), batch_size=1)

        engine(features[:2]), loop(features[:2])  # warm-up
        engine_rate, loop_rate = _features_per_s(engine, features), _features_per_s(loop, features[:loop_features])
        report[name] = {"engine_features_per_s": round(engine_rate, 2), "loop_features_per_s": round(loop_rate, 2),
                        "ratio": round(engine_rate / loop_rate, 2)}
    return report
