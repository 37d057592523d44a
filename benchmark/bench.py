"""`python -m benchmark bench`: the steering engine against the one-feature-per-generate loop, in
the same run, on the same features and model. The loop runs on fewer features (it is the slow
side); both figures are features per second."""
from __future__ import annotations

import time
from dataclasses import replace

from benchmark.context import Context, MethodConfig
from benchmark.registry import METHODS


def _features_per_s(ctx: Context, fn, features: list[int], batch_size: int) -> float:
    ctx.config = replace(ctx.config, batch_size=batch_size)
    start = time.perf_counter()
    fn(ctx, features)
    return len(features) / (time.perf_counter() - start)


def bench(world_preset: str = "default", lm: str = "large", engine_features: int = 512, loop_features: int = 32,
          batch_size: int = 256) -> dict:
    import methods  # noqa: F401
    from benchmark.world.build import build_world

    ctx = Context(build_world(world_preset), lm, MethodConfig(batch_size=batch_size))
    d_sae = ctx.sae.d_sae
    features = list(range(min(engine_features, d_sae)))
    ctx.masked_top_images(features[:2])  # load the pool and activations outside the timings
    report = {}
    for name in ("steering", "hybrid"):
        fn = METHODS.get(name)
        fn(ctx, features[:2])  # warm-up
        engine = _features_per_s(ctx, fn, features, batch_size)
        loop = _features_per_s(ctx, fn, features[:loop_features], 1)
        report[name] = {"engine_features_per_s": round(engine, 2), "loop_features_per_s": round(loop, 2),
                        "ratio": round(engine / loop, 2)}
    return report
