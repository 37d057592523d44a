"""Controls and baselines: what a method must beat to mean anything."""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.explaining.context import Context, method
from benchmark.steering.inputs import random_directions
from methods.hybrid import hybrid


@method("random-direction", steers=True, reads=("steering_multiplier", "steering_coeff", "intervention"))
def random_direction(ctx: Context, features: list[int]) -> list[str]:
    """Steering with a random direction of the same norm as the feature's steering vector (added under
    clamp: a direction that is no latent has no code to set)."""
    directions = random_directions(ctx.sae.d_sae, ctx.sae.d_in, ctx.config.seed)[features]  # fixed per feature
    norms = ctx.steering_vectors(features).norm(dim=1, keepdim=True)
    return ctx.answer(ctx.empty_images(len(features)), norms * directions)


@method("permuted", steers=True, reads=("hybrid_multiplier", "hybrid_coeff", "intervention", "top_images", "permute",
                                       "evaluated"))
def permuted(ctx: Context, features: list[int]) -> list[str]:
    """Hybrid's explanation of another feature: feature f gets the explanation of (f + d_sae/2) mod
    d_sae, or (`permute = "list"`, the seed paper's) of the feature half the evaluated list further on."""
    if ctx.config.permute == "list":
        order = list(ctx.config.evaluated)
        if not set(features) <= set(order):
            raise ValueError("permute = 'list' needs the run's evaluated features in MethodConfig.evaluated")
        at = {f: i for i, f in enumerate(order)}
        shift = max(1, len(order) // 2)
        return hybrid(ctx, [order[(at[f] + shift) % len(order)] for f in features])
    return hybrid(ctx, [(f + ctx.sae.d_sae // 2) % ctx.sae.d_sae for f in features])


@method("no-steer")
def no_steer(ctx: Context, features: list[int]) -> list[str]:
    """The empty image, unsteered: the same answer for every feature."""
    return ctx.answer(ctx.empty_images(1)) * len(features)


@method("caption-top1")
def caption_top1(ctx: Context, features: list[int]) -> list[str]:
    """The plain caption of the feature's single top image, unmasked."""
    images = ctx.topk_pool.images(ctx.top_ids(features)[:, 0].numpy())
    return ctx.answer(images[:, None])


@method("describe-top1")
def describe_top1(ctx: Context, features: list[int]) -> list[str]:
    """The describe prompt on the feature's single top image, shown as top-k shows it: a
    describe-the-image baseline any explainer can answer."""
    images, _ = ctx.shown_top_images(features)
    return ctx.answer(images[:, :1])


@method("random-words", needs=("vocabulary",))
def random_words(ctx: Context, features: list[int]) -> list[str]:
    """Two words of the source's vocabulary drawn at random per feature (seeded): fluent-looking and uninformed."""
    words = ctx.source.vocabulary()
    rng = np.random.default_rng(ctx.config.seed)  # one table for all features: fixed per feature
    table = [" ".join(rng.choice(words, size=2, replace=False)) for _ in range(ctx.sae.d_sae)]
    return [table[f] for f in features]


@method("oracle", needs=("groundtruth",))
def oracle(ctx: Context, features: list[int]) -> list[str]:
    """The ground truth's phrase for the feature (the world: its concept with its position tag)."""
    truth = ctx.source.capabilities.groundtruth
    return [truth.phrase(f) or "" for f in features]


GENERIC_LABELS = ("an image", "a photo", "objects", "nothing", "a shape", "a pattern", "a colour", "depictions")
"""Labels that fit any feature: a constant label that scores well (Describe-and-Dissect's "depictions"
beat every real method on MILANNOTATIONS) says the metric rewards something other than the feature."""


@method("constant-label", needs=("vocabulary",))
def constant_label(ctx: Context, features: list[int]) -> list[str]:
    """The best constant label: one label for every feature, the candidate (`candidate_labels`) that
    scores best on the validation features, chosen per metric by the run (rows `constant-label[METRIC]`,
    the choice in run.json). Called outside a run, with no metric to choose by: the first generic label."""
    return [candidate_labels(ctx.source.vocabulary())[0]] * len(features)


def candidate_labels(vocabulary: list[str], generic: tuple[str, ...] = GENERIC_LABELS) -> list[str]:
    """The constant labels searched: the generic ones, then the source's vocabulary (the pool's caption
    words and short phrases: the world's concept names, a real pool's label names), each once, in that
    order, so a tie goes to the more generic label."""
    return list(dict.fromkeys([*generic, *(w.strip() for w in vocabulary if w.strip())]))


def best_label(scores_LF: pd.DataFrame, higher_is_better: bool = True) -> tuple[str, dict[str, float]]:
    """(label, means): the row label of `scores_LF` (candidate label x validation feature, one metric's
    headline; NaN for dead features) with the best mean over features, and every candidate's mean. A
    tie goes to the first in row order; a label with no finite score never wins; with none finite, the
    first label."""
    means = scores_LF.mean(axis=1, skipna=True)
    sign = 1.0 if higher_is_better else -1.0
    finite = means[np.isfinite(means.to_numpy(np.float64))]
    label = str(scores_LF.index[0]) if finite.empty else str((sign * finite).idxmax())
    return label, {str(k): float(v) for k, v in means.items()}
