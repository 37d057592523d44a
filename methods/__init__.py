"""Explanation methods, one per file, each registered with `@method(name, needs=...)`
(`benchmark.explaining.context`), `@method(name="...")` or `@METHODS.register(name)`.

A method is `explain(ctx: Context, features: list[int]) -> list[str]`: batched over features, so
that the steering engine can put many features in one generate call. Importing this package
registers the built-ins by name only (their modules are read, not imported), so a misspelt method
is reported before torch is imported."""
from benchmark.registry import METHODS

METHODS.register_package("methods", "method", "METHODS")
