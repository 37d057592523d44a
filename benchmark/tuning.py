"""Choosing steering coefficients on a validation slice of features (the paper's protocol: tune on
the first latents by a quality metric, freeze for the rest).

Each tunable coefficient is picked by the method it belongs to and then used by every method that
reads it, so a control runs at the coefficient of the method it controls for (random-direction at
steering's, permuted at hybrid's) rather than at one tuned for itself.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from benchmark.backends import Backend
from benchmark.context import Context, MethodConfig
from benchmark.explanations import explain
from benchmark.registry import METHODS, warn
from benchmark.scoring import Metric, ScoringContext, score
from benchmark.sources.source import Source

TUNABLE: dict[str, tuple[str, tuple[float, ...], frozenset[str]]] = {
    "steering_multiplier": ("steering", (1.0, 2.0, 4.0, 8.0), frozenset({"steering", "random-direction"})),
    "hybrid_multiplier": ("hybrid", (0.25, 0.5, 1.0, 2.0, 4.0), frozenset({"hybrid", "permuted"})),
}
"""config field -> (method whose score picks it, candidates in units of the feature's mean top
activation, methods that read it)."""


def tune(source: Source, config: MethodConfig, methods: list[str], metric: Metric, sctx: ScoringContext,
         validation: list[int], backend: Backend | None = None) -> tuple[MethodConfig, dict]:
    """The config with every coefficient that `methods` read set to its best candidate by the mean of
    `metric`'s headline over the validation features, and a record of the sweep."""
    record = {"metric": metric.name, "column": metric.headline, "validation_features": validation, "fields": {}}
    for field, (owner, candidates, readers) in TUNABLE.items():
        if not readers & set(methods):
            continue
        means = {}
        for value in candidates:
            ctx = Context(source, replace(config, **{field: value}))
            texts = explain(ctx, owner, METHODS.get(owner), validation, backend)
            values = score(sctx, metric, validation, [texts[f] for f in validation])[metric.headline].to_numpy()
            means[value] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        if not any(np.isfinite(m) for m in means.values()):
            warn(f"--tune: {metric.headline} is NaN for every validation feature (all dead?); {field} falls back to "
                 f"the first candidate, {candidates[0]}")
        sign = 1 if metric.higher_is_better else -1
        chosen = max(candidates, key=lambda v: sign * means[v] if np.isfinite(means[v]) else -np.inf)
        config = replace(config, **{field: chosen})
        record["fields"][field] = {"tuned_with": owner, "means": {str(v): round(m, 4) for v, m in means.items()},
                                   "chosen": chosen}
    record["config"] = asdict(config)
    return config, record
