"""The steering hook and the engine on the world's trained VLM: exact per-row, per-image,
per-position addition; the engine's batched answers equal the hook around the checkpoint's own
`generate`, one feature at a time."""
import numpy as np
import torch

from benchmark.config.method import MethodConfig
from benchmark.config.resolve import resolve
from benchmark.explaining.context import Context
from benchmark.steering.hook import steered_generate


def test_each_image_row_gets_its_rows_vector_at_its_positions():
    layer = torch.nn.Identity()
    seen = []

    def fake_generate(images_bNHWC):  # runs the "tower layer" once on zeros, like a prefill
        b, n = images_bNHWC.shape[:2]
        seen.append(layer(torch.zeros(b * n, 3, 2)))
        return ["x"] * b

    vectors = torch.arange(1.0, 7.0).reshape(3, 2)  # 3 rows (features), D = 2
    positions = torch.zeros(3, 2, 3, dtype=torch.bool)  # 2 images per row, 3 tokens per image
    positions[0, 0, 1] = positions[0, 1, 2] = positions[2, 1, 0] = True
    out = steered_generate(fake_generate, layer, np.zeros((3, 2, 4, 4, 3), np.uint8), vectors, positions, batch_size=2)
    assert out == ["x"] * 3
    got = torch.cat(seen).reshape(3, 2, 3, 2)  # rows, images, tokens, D
    expected = vectors[:, None, None, :] * positions[..., None]
    assert torch.equal(got, expected)


def _hook_loop(ctx: Context, images_BNHWC, vectors_BD, positions_BNT=None) -> list[str]:
    source = ctx.source
    prompts, shared = source.spec.prompts, images_BNHWC.shape[1] > 1
    prompt = prompts.shared if shared else prompts.describe
    generate = lambda batch: source.vlm.generate(batch, prompt, source.max_new_tokens(shared),  # noqa: E731
                                                 prompts.answer_prefix)
    return steered_generate(generate, source.vlm.layer(source.layer), images_BNHWC, vectors_BD, positions_BNT,
                            batch_size=1)


def test_engine_equals_the_hook_loop_on_the_world_vlm(world):
    ctx = Context(world.source("large"), resolve(MethodConfig(batch_size=5), None))
    features = list(range(12))
    vectors = (8.0 * ctx.scales(features))[:, None] * ctx.sae.W_dec[features]
    batched = ctx.answer(ctx.empty_images(12), vectors)
    assert batched == _hook_loop(ctx, ctx.empty_images(12), vectors)
    assert len(set(batched)) > 1  # the features steer to different answers
    images, positions = ctx.shown_top_images(features[:6])
    hybrid = ctx.answer(images, 4 * vectors[:6], positions)
    assert hybrid == _hook_loop(ctx, images, 4 * vectors[:6], positions)


def test_no_positions_selected_is_no_steering(world):
    ctx = Context(world.source("small"), resolve(MethodConfig(), None))
    images = ctx.topk_pool.images(range(6)).reshape(2, 3, 32, 32, 3)
    nowhere = torch.zeros(2, 3, 17, dtype=torch.bool)
    assert ctx.answer(images, ctx.sae.W_dec[:2] * 50, nowhere) == ctx.answer(images)
    assert ctx.answer(images, ctx.sae.W_dec[:2] * 50, ~nowhere) != ctx.answer(images)
