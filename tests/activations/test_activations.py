"""The streamed activation pass and its stores: exact for every SAE kind (a ReLU SAE with hundreds of
active latents per token), equal to the dense computation on the world's tower, top images as a
top-k over the whole pool would choose them whatever the batch size, chunked indexes that merge
back to one, and the cache read on a second request."""
import numpy as np
import pytest
import torch

from benchmark.activations.passes import TowerCodes, cached_store, encode_codes, write_store
from benchmark.activations.stores import Codes, LatentIndex, LatentIndexWriter, ScoringActivations, TopImages
from benchmark.activations.top_images import HEATMAP_OPACITY, heatmap, masked
from benchmark.models.sae import SAE
from benchmark.world.vlm import tower_states


def relu_sae(d_in: int = 16, d_sae: int = 512, seed: int = 0) -> SAE:
    """A ReLU SAE whose tokens have hundreds of active latents (about half of 512)."""
    g = torch.Generator().manual_seed(seed)
    sae = SAE(d_in, d_sae, architecture="relu")
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g))
    return sae


def batches(states_NPD: torch.Tensor, sae: SAE, size: int):
    for start in range(0, len(states_NPD), size):
        yield start, encode_codes(sae, states_NPD[start:start + size])


def test_a_relu_sae_with_hundreds_of_active_latents_is_stored_exactly(tmp_path, monkeypatch):
    import benchmark.activations.passes as activations
    import benchmark.activations.stores as stores

    sae = relu_sae().double()  # the numeric contract's dtype on a CPU (`benchmark.numerics`)
    states = torch.randn(30, 9, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():  # a direct encode of each batch of 4 images (36 tokens), as the pass batches them
        dense64_NPF = torch.cat([sae.encode(states[s:s + 4].reshape(-1, 16)).reshape(-1, 9, 512) for s in range(0, 30, 4)])
    dense_NPF = dense64_NPF.float()  # what the store keeps
    active = (dense_NPF > 0).sum(-1)
    assert active.min() > 150  # hundreds of active latents on every token: no cap would survive this
    monkeypatch.setattr(activations, "ENCODE_ELEMENTS", 512 * 12)  # encoded 12 tokens at a time
    monkeypatch.setattr(stores, "CHUNK_ENTRIES", 5000)  # and merged from many chunks
    write_store(tmp_path, "scoring", batches(states, sae, 4), 30, 9, 512, keep=0, rank="mean")
    store = ScoringActivations(tmp_path)
    # Encoding 12 tokens a matmul sums in other blocks than 36 do: float64 agrees to ~1e-15, so every
    # token keeps the same active latents and every value its float32 rounding, to one ulp at most.
    assert torch.equal(store.dense_NPF() > 0, dense_NPF > 0)
    torch.testing.assert_close(store.dense_NPF(), dense_NPF, rtol=1.2e-7, atol=0)
    features = [3, 100, 511, 3]
    torch.testing.assert_close(store.image_means(features), dense_NPF[..., features].sum(1) / 9)
    images = np.array([29, 0, 7])
    torch.testing.assert_close(store.patch_acts(100, images), dense_NPF[images, :, 100], rtol=1.2e-7, atol=0)
    torch.testing.assert_close(store.means_of(images), dense_NPF[images].sum(1) / 9)
    expected_scale = dense_NPF.reshape(-1, 512).topk(16, dim=0).values.mean(0)
    torch.testing.assert_close(torch.from_numpy(store.scales_F), expected_scale)
    assert store.firing_F.tolist() == (dense_NPF > 0).flatten(0, 1).any(0).tolist()


@pytest.mark.parametrize("batch", [1, 3, 40])
@pytest.mark.parametrize("rank", ["mean", "max"])
def test_streamed_top_images_equal_a_top_k_over_the_whole_pool(tmp_path, batch, rank):
    sae = relu_sae(d_sae=64, seed=2).double()  # the contract's dtype: batches of 1, 3 or 40 images agree
    with torch.no_grad():
        sae.b_enc.fill_(-6.0)  # sparse: many latents fire on few images, some on none
    states = torch.randn(40, 4, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    states[7] = states[20]  # two identical images: a tie, which goes to the earlier one
    with torch.no_grad():
        dense_NPF = sae.encode(states.reshape(-1, 16)).reshape(40, 4, -1).float()  # what the store keeps
    write_store(tmp_path, "topk", batches(states, sae, batch), 40, 4, 64, keep=6, rank=rank)
    top = TopImages(tmp_path)
    stat_NF = dense_NPF.sum(1) / 4 if rank == "mean" else dense_NPF.amax(1)
    features = list(range(64))
    for f in features:  # best first, ties to the earlier image (a stable sort of the whole pool)
        expected = np.argsort(-stat_NF[:, f].numpy(), kind="stable")[:5]
        assert top.ids([f], 5)[0].tolist() == expected.tolist(), f
    torch.testing.assert_close(top.acts_BKP(features, 5), dense_NPF[top.ids(features, 5), :, torch.arange(64)[:, None]],
                               rtol=1.2e-7, atol=0)  # one float32 ulp: float64 sums in other blocks, rounded
    assert top.alive_F.tolist() == (stat_NF > 0).any(0).tolist()
    with pytest.raises(ValueError, match="kept 6"):
        top.ids([0], 7)


def test_a_pool_smaller_than_the_slots_leaves_them_empty(tmp_path):
    sae = relu_sae(d_sae=8).requires_grad_(False)
    write_store(tmp_path, "topk", batches(torch.randn(3, 4, 16), sae, 2), 3, 4, 8, keep=5, rank="mean")
    assert (TopImages(tmp_path).ids(list(range(8)), 5)[:, 3:] == -1).all()


def test_index_chunks_merge_to_the_index_written_at_once(tmp_path):
    g = torch.Generator().manual_seed(4)
    latent, row, value = torch.randint(0, 20, (1000,), generator=g), torch.arange(1000), torch.rand(1000, generator=g)
    for name, chunk in (("one", 10 ** 6), ("many", 37)):
        writer = LatentIndexWriter(tmp_path / name, 20, 1000, chunk=chunk)
        for s in range(0, 1000, 50):
            writer.add(latent[s:s + 50], row[s:s + 50], value[s:s + 50])
        writer.close()
    one, many = LatentIndex(tmp_path / "one"), LatentIndex(tmp_path / "many")
    for f in range(20):
        rows, values = many.entries(f)
        assert np.array_equal(rows, one.entries(f)[0]) and np.array_equal(values, one.entries(f)[1])
        assert np.array_equal(rows, row[latent == f].numpy()) and np.all(np.diff(rows) > 0)
    assert not list((tmp_path / "many").glob("chunk*"))


def test_stores_equal_the_dense_encoding_on_the_world_tower(world):
    source = world.source("small")
    sae = source.sae()
    for split in ("topk", "scoring"):
        images = world.pool(split).images_NHWC
        with torch.no_grad():
            dense_NPF = sae.encode(tower_states(world.tower(), images, world.sae_layer))
        mean_NF = dense_NPF.mean(1)
        if split == "scoring":
            store = source.activations("scoring")
            torch.testing.assert_close(store.dense_NPF(), dense_NPF, atol=1e-5, rtol=0)
            torch.testing.assert_close(store.image_means([7, 3]), mean_NF[:, [7, 3]], atol=1e-6, rtol=0)
            continue
        top = source.activations("topk")
        alive = mean_NF.amax(0) > 0
        ids = top.ids(list(range(sae.d_sae)), 5)
        torch.testing.assert_close(mean_NF.gather(0, ids.T)[:, alive], mean_NF.topk(5, dim=0).values[:, alive],
                                   atol=1e-6, rtol=0)
        features = [5, 1]
        torch.testing.assert_close(top.acts_BKP(features, 5), dense_NPF[ids[features], :, torch.tensor(features)[:, None]],
                                   atol=1e-5, rtol=0)


def test_tower_codes_of_the_pool_equal_the_codes_of_its_images(world):
    source = world.source("small")
    codes = TowerCodes(source.vlm, source.layer, source.sae())
    pool = source.pool("scoring")
    (start, streamed), = list(codes.of_pool(pool, 3, 9))
    direct = codes(pool.images(np.arange(3, 9)))
    assert start == 3 and all(torch.equal(getattr(streamed, n), getattr(direct, n))
                              for n in ("image_E", "patch_E", "latent_E", "value_E"))


def test_second_request_reads_the_cache(tmp_path):
    calls = []
    codes = Codes(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([1.5, 0.5]), 1, 2, 4)

    def build(dpath):
        calls.append(1)
        write_store(dpath, "topk", [(0, codes)], 1, 2, 4, keep=1, rank="mean")

    first = cached_store(tmp_path, {"pool": "x"}, "topk", build)
    second = cached_store(tmp_path, {"pool": "x"}, "topk", build)
    assert calls == [1]
    assert torch.equal(second.acts_BKP([2, 0, 1], 1), torch.tensor([[[1.5, 0.0]], [[0.0, 0.5]], [[0.0, 0.0]]]))
    assert torch.equal(first.score_FK, second.score_FK)


def test_heatmap_overlays_green_by_activation_and_masked_blacks_out_the_rest():
    """One 2 x 2-patch grey image; the feature fires 4 on patch 0, 1 on patch 3, nowhere else."""
    image = np.full((1, 1, 4, 4, 3), 100, np.uint8)
    acts = torch.tensor([[[4.0, 0.0, 0.0, 1.0]]])
    heat = heatmap(image, acts, patch=2)
    alpha = {0: HEATMAP_OPACITY, 1: 0.0, 2: 0.0, 3: HEATMAP_OPACITY / 4}
    for p, a in alpha.items():
        r, c = divmod(p, 2)
        pixel = heat[0, 0, 2 * r, 2 * c]
        assert tuple(pixel) == tuple(np.rint((1 - a) * 100 + a * np.array([0, 255, 0])).astype(np.uint8)), p
    out = masked(image, acts, patch=2)
    assert out[0, 0, 0, 2].tolist() == [0, 0, 0] and out[0, 0, 0, 0].tolist() == [100, 100, 100]
    assert out[0, 0, 3, 3].tolist() == [100, 100, 100] and out[0, 0, 3, 0].tolist() == [0, 0, 0]
