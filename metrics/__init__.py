"""Fidelity metrics, one per file, each registered with `@metric(name, columns=..., needs=...)`.

A metric module holds a pure function of tensors (the statistic, tested on known answers) and a
registered batched adapter `score(ctx: ScoringContext, features, explanations) -> {column: array}`
that feeds it from the run's source. Importing this package registers the built-ins by name only
(their modules are read, not imported), so names are checked before torch is imported; `resolve`
and `all_metrics` import what they return."""
from __future__ import annotations

from benchmark.scoring.metric import METRICS, Metric

METRICS.register_package("metrics", "metric", "METRICS")


def all_metrics() -> list[Metric]:
    return [METRICS.get(name) for name in METRICS.names()]


def named_metrics(spec: str | None, available: set[str] | None = None) -> list[Metric]:
    """`None` or 'all': every registered metric whose needs lie in `available` (every metric when
    None); else a comma list of names (a plug-in that is no `Metric` is refused by `METRICS.get`)."""
    if spec in (None, "all"):
        return [m for m in all_metrics() if available is None or set(m.needs) <= available]
    return [METRICS.get(name) for name in spec.split(",") if name]
