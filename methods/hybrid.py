"""Steering-informed top-k (the paper's hybrid): top-k's images (masked by default) and prompt, plus
the decoder direction added only at the patch tokens where the feature fires. No extra forward passes."""
from benchmark.explaining.context import Context, method


@method("hybrid", steers=True, tunes=("hybrid_multiplier", "hybrid_coeff"), reads=("intervention", "top_images", "firing_only", "direction"))
def hybrid(ctx: Context, features: list[int]) -> list[str]:
    """Top-k's masked images and prompt, steered by the decoder direction where the feature fires."""
    return ctx.answer_top(features, ctx.steering_vectors(features, "hybrid"))
