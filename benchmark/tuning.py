"""Choosing steering settings on a validation slice of features (the paper's protocol: tune on
the first latents by a quality metric, freeze for the rest).

By default the coefficient each steering method uses is swept (its multiplier, or its absolute
coefficient when one is set); `--sweep FIELD=V1,V2` sweeps any `TUNABLE` field over the values
given (the intervention, how top images are shown, other coefficients). Fields are picked one after
another, in `TUNABLE`'s order, each with the values chosen before it. Each is picked by the method it
belongs to and then used by every method that reads it, so a control runs at the setting of the
method it controls for (random-direction at steering's, permuted at hybrid's) rather than at one
tuned for itself.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from benchmark.backends import Backend
from benchmark.context import TOP_IMAGES, Context, MethodConfig
from benchmark.explanations import explain
from benchmark.registry import METHODS, UsageError, warn
from benchmark.scoring import Metric, ScoringContext, score
from benchmark.sources.source import Source
from benchmark.steering.interventions import INTERVENTIONS

STEERS = frozenset({"steering", "random-direction"})
HYBRID = frozenset({"hybrid", "permuted"})
TUNABLE: dict[str, tuple[str, tuple, frozenset[str]]] = {
    "steering_multiplier": ("steering", (1.0, 2.0, 4.0, 8.0), STEERS),
    "steering_coeff": ("steering", (50.0, 100.0, 200.0, 400.0), STEERS),
    "hybrid_multiplier": ("hybrid", (0.25, 0.5, 1.0, 2.0, 4.0), HYBRID),
    "hybrid_coeff": ("hybrid", (12.5, 25.0, 50.0, 100.0), HYBRID),
    "intervention": ("steering", INTERVENTIONS, STEERS | HYBRID),
    "top_images": ("topk", TOP_IMAGES, HYBRID | {"topk"}),
}
"""config field -> (method whose score picks it, default candidates, methods that read it).
Multipliers are in units of the feature's mean top activation; coefficients are absolute (the
paper: 200 for steering, 50 for the hybrid)."""


def parse_sweep(specs: tuple[str, ...]) -> dict[str, tuple]:
    """`FIELD=V1,V2` per spec as {field: candidates}; an unknown field or a value of the wrong kind is
    a one-line UsageError."""
    out: dict[str, tuple] = {}
    for spec in specs:
        field, _, values = spec.partition("=")
        field = field.strip().replace("-", "_")
        if field not in TUNABLE or not values:
            raise UsageError(f"--sweep {spec!r}: expected FIELD=V1,V2 with FIELD one of {', '.join(TUNABLE)}")
        choices = TUNABLE[field][1]
        try:
            candidates = tuple(v.strip() if isinstance(choices[0], str) else float(v) for v in values.split(","))
        except ValueError:
            raise UsageError(f"--sweep {spec!r}: {field} takes numbers") from None
        if isinstance(choices[0], str) and not set(candidates) <= set(choices):
            raise UsageError(f"--sweep {spec!r}: {field} is one of {', '.join(choices)}")
        out[field] = candidates
    return out


def swept(config: MethodConfig, methods: list[str], sweep: dict[str, tuple]) -> dict[str, tuple]:
    """What `tune` sweeps: each steering method's coefficient in the unit the config uses, then the
    fields `sweep` names, each over its candidates; only fields a requested method reads."""
    fields = {"steering_coeff" if config.steering_coeff is not None else "steering_multiplier": None,
              "hybrid_coeff" if config.hybrid_coeff is not None else "hybrid_multiplier": None, **sweep}
    return {f: sweep.get(f, TUNABLE[f][1]) for f in TUNABLE if f in fields and TUNABLE[f][2] & set(methods)}


def tune(source: Source, config: MethodConfig, methods: list[str], metric: Metric, sctx: ScoringContext,
         validation: list[int], backend: Backend | None = None,
         sweep: dict[str, tuple] | None = None) -> tuple[MethodConfig, dict]:
    """The config with every swept setting that `methods` read (`swept`) set to its best candidate by
    the mean of `metric`'s headline over the validation features, and a record of the sweep."""
    record = {"metric": metric.name, "column": metric.headline, "validation_features": validation, "fields": {}}
    for field, candidates in swept(config, methods, sweep or {}).items():
        owner = TUNABLE[field][0]
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
