"""Controls and baselines: what a method must beat to mean anything."""
import numpy as np

from benchmark.context import Context, method
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
