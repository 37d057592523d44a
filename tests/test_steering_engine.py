"""The steering engine: exact per-row, per-image, per-position addition; batched equals one at a time."""
import numpy as np
import torch

from benchmark.steering import steered_generate
from benchmark.world.quality import empty_image, steered_captions
from benchmark.world.vlm import generate


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


def test_batched_and_one_at_a_time_give_identical_text(world):
    vlm, sae = world.vlm("large"), world.sae()
    vectors = sae.W_dec[:12] * 8.0
    batched = steered_captions(vlm, world.tokenizer, world.sae_layer, vectors)
    layer = vlm.model.vision_tower.encoder.layers[world.sae_layer - 1]
    images = np.broadcast_to(empty_image(32), (12, 1, 32, 32, 3))
    one_by_one = steered_generate(lambda b: generate(vlm, world.tokenizer, b), layer, images, vectors, batch_size=1)
    assert batched == one_by_one
    assert len(set(batched)) > 1  # the features steer to different answers


def test_no_positions_selected_is_no_steering(world):
    vlm = world.vlm("small")
    layer = vlm.model.vision_tower.encoder.layers[world.sae_layer - 1]
    images = world.pool("topk").images_NHWC[:6].reshape(2, 3, 32, 32, 3)
    plain = generate(vlm, world.tokenizer, images)
    nowhere = torch.zeros(2, 3, 17, dtype=torch.bool)
    steered = steered_generate(lambda b: generate(vlm, world.tokenizer, b), layer, images,
                               world.sae().W_dec[:2] * 50, nowhere)
    assert steered == plain
