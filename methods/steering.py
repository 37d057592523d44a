"""Steering (the paper's method): the empty image, the feature's decoder direction added (or
written, or its latent clamped: `MethodConfig.intervention`) at every tower token of the SAE layer,
and the describe prompt."""
from benchmark.explaining.context import Context, method


@method("steering", steers=True, tunes=("steering_multiplier", "steering_coeff", "intervention"))
def steering(ctx: Context, features: list[int]) -> list[str]:
    """The empty image, steered by the feature's decoder direction at every token; describe prompt."""
    return ctx.answer(ctx.empty_images(len(features)), ctx.steering_vectors(features), features=features)
