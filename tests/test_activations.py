"""The activation cache: the sparse form is exact and equals the SAE on the world tower's own hidden
state (the source's pass through the steering engine is what the tower computes), rankings match
the dense computation, and a second request reads the cache instead of recomputing."""
import torch

from benchmark.activations import PoolActivations, cached_activations
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
