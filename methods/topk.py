"""Top-k: the feature's top images by mean activation over patches, each masked to the patches
where it fires (or under a heatmap: `MethodConfig.top_images`), as separate images in one prompt
asking what they share."""
from benchmark.explaining.context import Context, method


@method("topk", tunes=("top_images",))
def topk(ctx: Context, features: list[int]) -> list[str]:
    """The top-k images, masked to where the feature fires, in one prompt asking what they share."""
    return ctx.answer_top(features)
