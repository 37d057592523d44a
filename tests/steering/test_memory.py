"""Rows per `generate` planned from free device memory: the KV cache against known figures, the plan
against a free-memory figure, and every real shape on an 80 GB and a 141 GB card."""
from __future__ import annotations

import pytest
import torch

from benchmark.bench.shapes import SHAPES, build_random_vlm
from benchmark.registry import UsageError
from benchmark.steering.memory import RESERVE_BYTES, SAFETY, RowBytes, row_bytes, rows_that_fit

GIB = 2 ** 30
SEED_ROWS = 8
CARDS_GIB = {"H100 80GB": 79.1, "H200": 139.8}
"""What `torch.cuda.mem_get_info` reports as total on each card."""


@pytest.fixture(scope="module")
def meta_vlms():
    """The real shapes' models on the meta device: configs and parameter counts, no memory."""
    return {name: build_random_vlm(SHAPES[name], "meta", torch.bfloat16)
            for name in ("llava-1.5-7b", "gemma-3-4b", "gemma-3-27b")}


def test_kv_cache_is_the_models_known_bytes_per_token(meta_vlms):
    """Llama-2-7B keeps 0.5 MiB of bf16 keys and values per token (32 layers x 2 x 4,096); Gemma-3-27B
    62 layers x 2 x 16 KV heads x 128 x 2 bytes = 496 KiB; Gemma-3-4B 34 x 2 x 4 x 256 x 2 = 136 KiB."""
    for name, per_token in (("llava-1.5-7b", 512 * 2 ** 10), ("gemma-3-27b", 496 * 2 ** 10),
                            ("gemma-3-4b", 136 * 2 ** 10)):
        config = meta_vlms[name].model.config
        assert row_bytes(config, 600, 100, 1, 577).kv_cache == per_token * 700
        assert row_bytes(config, 600, 0, 1, 577).kv_cache == per_token * 600


@pytest.mark.parametrize("family", ["llava", "gemma3", "internvl"])
def test_kv_cache_is_what_the_language_model_keeps(vlms, family):
    """The language model's own cache after a 12-token forward (float32): its keys and values, byte for byte."""
    vlm = vlms[family]
    vocab = vlm.model.config.get_text_config().vocab_size
    out = vlm.model.model.language_model(input_ids=torch.randint(3, min(vocab, 30), (1, 12)), use_cache=True)
    kept = sum(layer.keys.nbytes + layer.values.nbytes for layer in out["cache"].layers)
    assert row_bytes(vlm.model.config, 12, 0, 1, len(vlm.token_patches()), dtype_bytes=4).kv_cache == kept


def test_a_row_grows_with_its_prompt_and_its_images(meta_vlms):
    config = meta_vlms["llava-1.5-7b"].model.config
    one, five = row_bytes(config, 616, 100, 1, 577), row_bytes(config, 2920, 100, 5, 577)
    assert five.tower == 5 * one.tower and five.kv_cache > 4 * one.kv_cache and five.prefill > 4 * one.prefill
    assert five.logits == one.logits == 3 * 32064 * 4  # the last position's float32 logits, scores, argmax
    assert one.as_dict()["total"] == one.kv_cache + one.prefill + one.tower + one.logits


def test_rows_are_what_the_usable_memory_holds_at_most_the_batch_size():
    per_row = RowBytes(kv_cache=300 * 2 ** 20, prefill=50 * 2 ** 20, tower=10 * 2 ** 20, logits=2 ** 20)
    free = 40 * GIB
    usable = int(free * SAFETY) - RESERVE_BYTES
    assert rows_that_fit(per_row, free, cap=512) == usable // per_row.total == 90
    assert rows_that_fit(per_row, free, cap=64) == 64
    assert rows_that_fit(per_row, 2 * free, cap=512) > 2 * 90 - 1
    with pytest.raises(UsageError, match=r"one row needs 0\.35 GiB but the device has 2\.00 GiB free"):
        rows_that_fit(per_row, 2 * GIB, cap=512)


@pytest.mark.parametrize("card", CARDS_GIB)
def test_every_real_shape_plans_at_least_the_seeds_batch_on_either_card(meta_vlms, card):
    """One command, no hand-set batch: on both cards, for steering (1 image) and hybrid (5), each
    shape plans at least the seed's 8 rows, and its planned peak leaves the reserve free on the card."""
    for name, vlm in meta_vlms.items():
        weights = sum(p.numel() * p.element_size() for p in vlm.model.parameters())
        free = int(CARDS_GIB[card] * GIB) - weights - GIB // 2  # the CUDA context's share
        for n_images in (1, 5):
            prompt = SHAPES[name].prompt_tokens + n_images * vlm.tokens_per_image
            per_row = row_bytes(vlm.model.config, prompt, 100, n_images, len(vlm.token_patches()))
            rows = rows_that_fit(per_row, free, cap=512)
            assert rows >= SEED_ROWS, (name, n_images, card, rows)
            assert weights + rows * per_row.total + RESERVE_BYTES < CARDS_GIB[card] * GIB


def test_more_memory_plans_more_rows(meta_vlms):
    vlm = meta_vlms["gemma-3-27b"]
    per_row = row_bytes(vlm.model.config, 296, 100, 1, len(vlm.token_patches()))
    rows = [rows_that_fit(per_row, int(gib * GIB), cap=4096) for gib in (20, 40, 80)]
    assert rows == sorted(rows) and rows[0] < rows[-1]
