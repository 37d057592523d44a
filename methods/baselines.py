"""Controls and baselines: what a method must beat to mean anything."""
import numpy as np

from benchmark.context import Context
from benchmark.registry import METHODS
from benchmark.world.concepts import CONCEPTS
from benchmark.world.groundtruth import concept_phrase
from benchmark.world.quality import random_directions
from methods.hybrid import hybrid


@METHODS.register("random-direction")
def random_direction(ctx: Context, features: list[int]) -> list[str]:
    """Steering with a random direction of the same norm as the feature's steering vector."""
    directions = random_directions(ctx.sae.d_sae, ctx.sae.d_in, ctx.config.seed)[features]  # fixed per feature
    coeffs = ctx.steering_multiplier * ctx.scales(features)
    return ctx.answer(ctx.empty_images(len(features)), coeffs[:, None] * directions)


@METHODS.register("permuted")
def permuted(ctx: Context, features: list[int]) -> list[str]:
    """Hybrid's explanation of another feature: feature f gets the explanation of (f + d_sae/2) mod d_sae."""
    return hybrid(ctx, [(f + ctx.sae.d_sae // 2) % ctx.sae.d_sae for f in features])


@METHODS.register("no-steer")
def no_steer(ctx: Context, features: list[int]) -> list[str]:
    """The empty image, unsteered: the same answer for every feature."""
    return ctx.answer(ctx.empty_images(1)) * len(features)


@METHODS.register("caption-top1")
def caption_top1(ctx: Context, features: list[int]) -> list[str]:
    """The plain caption of the feature's single top image, unmasked."""
    images = ctx.topk_pool.images_NHWC[ctx.top_images[features, 0].numpy()]
    return ctx.answer(images[:, None])


@METHODS.register("random-words")
def random_words(ctx: Context, features: list[int]) -> list[str]:
    """Two concept words drawn at random per feature (seeded): fluent-looking and uninformed."""
    words = [c.name for c in CONCEPTS]
    rng = np.random.default_rng(ctx.config.seed)  # one table for all features: fixed per feature
    table = [" ".join(rng.choice(words, size=2, replace=False)) for _ in range(ctx.sae.d_sae)]
    return [table[f] for f in features]


@METHODS.register("oracle")
def oracle(ctx: Context, features: list[int]) -> list[str]:
    """The ground-truth concept phrase (worlds with ground truth only), with its position tag."""
    table = ctx.groundtruth.set_index("feature")
    return [concept_phrase(r.category, r.concept, r.position_tag) if isinstance(r.concept, str) else ""
            for r in (table.loc[f] for f in features)]
