"""Choosing steering settings on a validation slice of features (the paper's protocol: tune on
the first latents by a quality metric, freeze for the rest).

Which method reads which setting is what methods declare (`@method(..., reads=..., tunes=...)`),
not a list here. By default each steering coefficient a requested method reads is swept (the
multiplier, or the absolute coefficient when one is set); `--sweep FIELD=V1,V2` sweeps any
`TUNABLE` field a requested method reads over the values given (the intervention, how top images
are shown, other coefficients). Fields are picked one after another, in `TUNABLE`'s order, each with
the values chosen before it. Each is picked by the score of the method that declares it `tunes` it
(the first such requested method, else the registered one) and then used by every method that reads
it, so a control runs at the setting of the method it controls for (random-direction at steering's,
permuted at hybrid's) rather than at one tuned for itself.

The best-constant-label control is chosen on the same validation slice (`constant_labels`): per
metric, the one label that scores best when given to every validation feature.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from benchmark.config.method import TOP_IMAGES, MethodConfig
from benchmark.explaining.backends import Backend
from benchmark.explaining.context import Context, method_reads, method_tunes
from benchmark.explaining.explain import explain
from benchmark.registry import METHODS, UsageError, warn
from benchmark.scoring.context import Metric, ScoringContext, score
from benchmark.sources.source import Source
from benchmark.steering.interventions import INTERVENTIONS

TUNABLE: dict[str, tuple] = {
    "steering_multiplier": (1.0, 2.0, 4.0, 8.0),
    "steering_coeff": (50.0, 100.0, 200.0, 400.0),
    "hybrid_multiplier": (0.25, 0.5, 1.0, 2.0, 4.0),
    "hybrid_coeff": (12.5, 25.0, 50.0, 100.0),
    "intervention": INTERVENTIONS,
    "top_images": TOP_IMAGES,
}
"""config field -> default candidates, in the order fields are picked. Multipliers are in units of
the feature's mean top activation; coefficients are absolute (the paper: 200 for steering, 50 for
the hybrid)."""


def readers(field: str) -> list[str]:
    """The registered methods that declare they read `field`."""
    import methods  # noqa: F401  (registers the built-ins)

    return [name for name in METHODS.names() if field in method_reads(METHODS.get(name))]


def tuner(field: str, methods: dict[str, Callable]) -> tuple[str, Callable] | None:
    """(name, function) of the method whose score picks `field`: the first requested one that
    declares it tunes it, else the first registered one; None when no method does."""
    for name, fn in [*methods.items(), *((n, None) for n in METHODS.names() if n not in methods)]:
        fn = fn or METHODS.get(name)
        if field in method_tunes(fn):
            return name, fn
    return None


def parse_sweep(specs: tuple[str, ...]) -> dict[str, tuple]:
    """`FIELD=V1,V2` per spec as {field: candidates}; an unknown field or a value of the wrong kind is
    a one-line UsageError."""
    out: dict[str, tuple] = {}
    for spec in specs:
        field, _, values = spec.partition("=")
        field = field.strip().replace("-", "_")
        if field not in TUNABLE or not values:
            raise UsageError(f"--sweep {spec!r}: expected FIELD=V1,V2 with FIELD one of {', '.join(TUNABLE)}")
        choices = TUNABLE[field]
        try:
            candidates = tuple(v.strip() if isinstance(choices[0], str) else float(v) for v in values.split(","))
        except ValueError:
            raise UsageError(f"--sweep {spec!r}: {field} takes numbers") from None
        if isinstance(choices[0], str) and not set(candidates) <= set(choices):
            raise UsageError(f"--sweep {spec!r}: {field} is one of {', '.join(choices)}")
        out[field] = candidates
    return out


def swept(config: MethodConfig, methods: dict[str, Callable], sweep: dict[str, tuple]) -> dict[str, tuple]:
    """What `tune` sweeps: each steering coefficient in the unit the config uses, then the fields
    `sweep` names, each over its candidates; only fields a requested method declares it reads and
    some method declares it tunes."""
    wanted = {"steering_coeff" if config.steering_coeff is not None else "steering_multiplier",
              "hybrid_coeff" if config.hybrid_coeff is not None else "hybrid_multiplier", *sweep}
    read = {f for fn in methods.values() for f in method_reads(fn)}
    out = {}
    for field in TUNABLE:
        if field in wanted and field in read:
            if tuner(field, methods) is None:
                warn(f"--tune: {field} is read by {', '.join(n for n, fn in methods.items() if field in method_reads(fn))}"
                     f" but no method declares it tunes it; it stays as set")
                continue
            out[field] = sweep.get(field, TUNABLE[field])
    return out


def tune(source: Source, config: MethodConfig, methods: dict[str, Callable], metric: Metric, sctx: ScoringContext,
         validation: list[int], backend: Backend | None = None,
         sweep: dict[str, tuple] | None = None) -> tuple[MethodConfig, dict]:
    """The config with every swept setting that `methods` (name -> function) read (`swept`) set to
    its best candidate by the mean of `metric`'s headline over the validation features, and a record
    of the sweep."""
    record = {"metric": metric.name, "column": metric.headline, "validation_features": validation, "fields": {}}
    for field, candidates in swept(config, methods, sweep or {}).items():
        owner, owner_fn = tuner(field, methods)
        means = {}
        for value in candidates:
            ctx = Context(source, replace(config, **{field: value}))
            texts = explain(ctx, owner, owner_fn, validation, backend)
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


def constant_labels(sctx: ScoringContext, metrics: list[Metric], validation: list[int],
                    candidates: list[str]) -> dict[str, dict]:
    """Per metric (by name): the best constant label (`methods.baselines.best_label`) among `candidates`,
    each given to every validation feature and scored by the metric's headline, with every candidate's
    mean: chosen per metric, because a label that games one metric need not game another."""
    from methods.baselines import best_label

    out = {}
    for m in metrics:
        table = pd.DataFrame({label: score(sctx, m, validation, [label] * len(validation))[m.headline].to_numpy()
                              for label in candidates}, index=validation).T
        label, means = best_label(table, m.higher_is_better)
        out[m.name] = {"label": label, "column": m.headline, "validation_features": list(validation),
                       "means": {k: round(v, 4) if np.isfinite(v) else None for k, v in means.items()}}
    return out
