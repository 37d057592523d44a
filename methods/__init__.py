"""Explanation methods, one per file, each registered with `@METHODS.register(name)`.

A method is `explain(ctx: Context, features: list[int]) -> list[str]`: batched over features, so
that the steering engine can put many features in one generate call."""
from methods import baselines, hybrid, steering, topk  # noqa: F401  (registration)
