"""Steering-informed top-k (the paper's hybrid): top-k's masked images and prompt, plus the decoder
direction added only at the patch tokens where the feature fires. No extra forward passes."""
from benchmark.context import Context, method


@method("hybrid")
def hybrid(ctx: Context, features: list[int]) -> list[str]:
    """Top-k's masked images and prompt, steered by the decoder direction where the feature fires."""
    images, positions = ctx.masked_top_images(features)
    coeffs = ctx.config.hybrid_multiplier * ctx.scales(features)
    return ctx.answer(images, coeffs[:, None] * ctx.sae.W_dec[features], positions)
