"""The activation cache: the sparse form is exact and equals the SAE on the world tower's own hidden
state (the source's pass through the steering engine is what the tower computes), rankings match
the dense computation, and a second request reads the cache instead of recomputing."""
import torch

import numpy as np

from benchmark.activations import HEATMAP_OPACITY, PoolActivations, cached_activations, heatmap_top_images, masked_top_images
from benchmark.world.vlm import tower_states


def test_sparse_cache_equals_the_dense_encoding(world):
    source = world.source("small")
    acts = source.activations("topk")
    images = world.pool("topk").images_NHWC
    dense = source.sae().encode(tower_states(world.tower(), images, world.sae_layer))
    assert acts.shape == tuple(dense.shape)
    assert torch.allclose(acts.dense(), dense, atol=1e-5)
    assert torch.allclose(acts.dense(torch.tensor([7, 3, 7])), dense[..., [7, 3, 7]], atol=1e-5)
    mean = dense.mean(1)
    assert torch.allclose(acts.mean_over_patches(), mean, atol=1e-5)
    top = acts.top_images(5)
    assert top.shape == (source.sae().d_sae, 5)
    alive = mean.amax(0) > 0
    assert torch.allclose(mean.gather(0, top.T)[:, alive], mean.topk(5, dim=0).values[:, alive], atol=1e-6)


def test_second_request_reads_the_cache(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return PoolActivations(torch.tensor([[[2, 0]]], dtype=torch.int32), torch.tensor([[[1.5, 0.5]]]), 4)

    first = cached_activations(tmp_path, {"pool": "x"}, compute)
    second = cached_activations(tmp_path, {"pool": "x"}, compute)
    assert calls == [1]
    assert torch.equal(second.dense(), torch.tensor([[[0.5, 0.0, 1.5, 0.0]]])) and torch.equal(first.dense(), second.dense())


def test_heatmap_overlays_green_by_activation_and_masked_blacks_out_the_rest():
    """One 2 x 2-patch grey image; the feature fires 4 on patch 0, 1 on patch 3, nowhere else."""
    image = np.full((1, 4, 4, 3), 100, np.uint8)
    acts = PoolActivations(torch.tensor([[[0], [0], [0], [0]]], dtype=torch.int32),
                           torch.tensor([[[4.0], [0.0], [0.0], [1.0]]]), 1)
    top = torch.tensor([[0]])
    heat, active = heatmap_top_images(image, acts, top, [0], patch=2)
    alpha = {0: HEATMAP_OPACITY, 1: 0.0, 2: 0.0, 3: HEATMAP_OPACITY / 4}
    for p, a in alpha.items():
        r, c = divmod(p, 2)
        pixel = heat[0, 0, 2 * r, 2 * c]
        assert tuple(pixel) == tuple(np.rint((1 - a) * 100 + a * np.array([0, 255, 0])).astype(np.uint8)), p
    masked, active_masked = masked_top_images(image, acts, top, [0], patch=2)
    assert active.tolist() == active_masked.tolist() == [[[True, False, False, True]]]
    assert masked[0, 0, 0, 2].tolist() == [0, 0, 0] and masked[0, 0, 0, 0].tolist() == [100, 100, 100]
