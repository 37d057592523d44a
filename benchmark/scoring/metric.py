"""The metric interface, light enough to read without any model library: `Metric`, the `@metric`
decorator and the `METRICS` registry, so a run can check metric names before importing torch.
Everything a metric reads at scoring time is `benchmark.scoring.context.ScoringContext`.

    @metric("localization-iou", columns=("localization_iou",), needs=("segmenter",))
    def score_localization(ctx: ScoringContext, features, texts): ...
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmark.registry import Registry
from benchmark.sources.capabilities import NEEDS

ScoreFn = Callable[..., dict[str, Any]]
"""`score(ctx: benchmark.scoring.context.ScoringContext, features, explanations) -> {column: array}`."""


@dataclass(frozen=True)
class Metric:
    name: str
    columns: tuple[str, ...]
    """Score columns it writes; the first is its headline number on the leaderboard."""
    higher_is_better: bool
    needs: tuple[str, ...]
    """Source capabilities it reads (`benchmark.sources.capabilities.NEEDS`); refused on a source without them."""
    score: ScoreFn
    min_images: int = 1
    """Scoring-pool images below which its statistic is undefined for every feature: a run is refused."""
    records: Callable[[Any], int] | None = None
    """Scoring-pool images it samples per feature, from the scoring config; a smaller pool runs with a warning."""
    pooled: Callable[[list], float] | None = None
    """A statistic over every feature's samples at once (one AUROC over all of them), when the metric
    returns per-row `SAMPLES`; `main.csv` reports it beside the per-feature mean."""

    @property
    def headline(self) -> str:
        return self.columns[0]

    @property
    def samples_column(self) -> str:
        """The row column holding each feature's samples (JSON), for `pooled`."""
        return f"{self.headline}_samples"


SAMPLES = "samples"
"""The key under which a metric may return, per row, what `pooled` pools (None where it has none)."""


def as_metric(obj: object) -> Metric:
    """A `Metric`, or the function `@metric` decorated (it carries its `Metric`)."""
    found = getattr(obj, "metric", obj)
    if not isinstance(found, Metric):
        raise TypeError(f"{obj!r} is not a metric; decorate its score function with @metric(name, columns=...) "
                        f"from benchmark.scoring.context")
    return found


METRICS: Registry[Metric] = Registry("metric", entry_point_group="featurebench.metrics", contract=as_metric)
"""Fidelity metrics by name; the built-ins are registered by name (`metrics/__init__.py`), imported on use.
An entry point or file may name the `Metric` or the function `@metric` decorated."""


def metric(name: str, columns: tuple[str, ...], higher_is_better: bool = True, needs: tuple[str, ...] = (),
           min_images: int = 1, records: Callable[[Any], int] | None = None,
           pooled: Callable[[list], float] | None = None) -> Callable[[ScoreFn], ScoreFn]:
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"metric {name!r} needs {sorted(unknown)}; capabilities: {', '.join(NEEDS)}")

    def register(fn: ScoreFn) -> ScoreFn:
        fn.metric = METRICS.register(name, module=fn.__module__)(Metric(name, columns, higher_is_better, tuple(needs),
                                                                        fn, min_images, records, pooled))
        return fn

    return register
