"""The seed protocol against the seed paper's own recipe, written out here from its description
(`../shared/PAPER_PROTOCOL.md`; its code is HPAI-BSC/vision-interp) on a tiny Gemma 3 with a
dictionary_learning SAE (the seed's files) and a folder of non-square image files:

- its top images come from the ORIGINAL files handed to the model's processor, which resizes them
  with its own filter (Gemma 3: bilinear); featurebench's pool, resized whole, must give the same
  pixel values and so the same top images;
- in bf16 it casts the whole model with `model.to(bfloat16)` and forms `coeff x decoder row` in
  bf16 (its SAE is cast with the model), added to the layer's bf16 output by a forward hook; the
  steered tower state, and the answer, must be the same bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Gemma3ForConditionalGeneration

from benchmark.context import Context, MethodConfig
from benchmark.protocol import PAPER_REMOVED, clean_answer
from benchmark.sources.source import Source
from benchmark.sources.spec import models_config
from benchmark.steering.interventions import intervene
from tests.test_adapters import PROMPT, STEERED, save_tiny_checkpoint
from tests.test_layer_conventions import tiny_sae, write_dictionary_learning

IMAGES = 24
COEFF = 200.0  # the paper's steering coefficient


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    """A tiny Gemma 3, the seed's SAE files (layer 1: the output of block 1, hidden state 2) and
    non-square image files (a flat colour, one block of another, 45 x 70 px)."""
    root = tmp_path_factory.mktemp("seed")
    mp = pytest.MonkeyPatch()
    mp.setenv("FEATUREBENCH_CACHE", str(root / "cache"))
    save_tiny_checkpoint("gemma3", root / "gemma3", seed=3)
    words_only(root / "gemma3")
    write_dictionary_learning(root / "sae" / "trainer_0", tiny_sae(), layer=STEERED - 1)
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(IMAGES):
        image = np.full((45, 70, 3), rng.integers(0, 256, 3), np.uint8)
        r, c = rng.integers(0, 30), rng.integers(0, 50)
        image[r:r + 15, c:c + 20] = rng.integers(0, 256, 3)
        Image.fromarray(image).save(root / "images" / f"{i:03}.png")
    yield root
    mp.undo()


def words_only(path) -> None:
    """The checkpoint with the embedding rows of its special tokens but end-of-sequence zeroed: its
    tied output layer then scores them 0, below the best word, so greedy answers are words (the
    paper's prompt is mostly unknown words to the tiny tokenizer, and a random model would answer
    <unk>, which decodes to nothing)."""
    model, processor = Gemma3ForConditionalGeneration.from_pretrained(path), AutoProcessor.from_pretrained(path)
    tok = processor.tokenizer
    with torch.no_grad():
        for i in set(tok.all_special_ids) - {tok.eos_token_id}:
            model.get_input_embeddings().weight[i] = 0
    model.save_pretrained(path)


def seed_source(root, dtype: str = "float32") -> Source:
    tables = {"vlm": {"family": "gemma3", "path": str(root / "gemma3"), "device": "cpu", "dtype": dtype,
                      "max_new_tokens": 4},
              "sae": {"path": str(root / "sae" / "trainer_0")},
              "pool": {"source": str(root / "images"), "scoring_fraction": 0.25},
              "prompts": {"describe": PROMPT}}  # words the tiny tokenizer knows: the paper's would be all <unk>
    return Source(models_config(tables, "test"), "gemma3", protocol="seed")


def seed_model(root, dtype: torch.dtype):
    """The seed's model: loaded, then cast whole (`utils/utils.py` load_model)."""
    model = Gemma3ForConditionalGeneration.from_pretrained(root / "gemma3", attn_implementation="sdpa")
    return model.to(dtype).eval(), AutoProcessor.from_pretrained(root / "gemma3")


def seed_hook(vector_D: torch.Tensor, positions: list | None = None, seen: list | None = None):
    """The seed's forward hook on the SAE's block: `coeff x row`, formed in the state's dtype, added
    at every token (or at `positions[b]` of row b); `seen` collects the steered state."""
    def hook(module, args, output):
        state = output[0] if isinstance(output, tuple) else output
        if positions is None:
            state += COEFF * vector_D.to(state)
        else:
            for b, tokens in enumerate(positions):
                for t in tokens:
                    state[b, t, :] += COEFF * vector_D.to(state)
        if seen is not None:
            seen.append(state.clone())
        return output
    return hook


def original_files(root) -> list[Image.Image]:
    return [Image.open(root / "images" / f"{i:03}.png").convert("RGB") for i in range(IMAGES)]


def test_pool_images_resized_whole_are_the_processors_own_pixels(seed_files):
    source = seed_source(seed_files)
    pool = source.pool("topk")
    originals = [original_files(seed_files)[r] for r in pool.rows.tolist()]
    processor = source.vlm.processor.image_processor
    expected = processor(originals, return_tensors="pt")["pixel_values"]
    got = processor([Image.fromarray(a) for a in pool.images(np.arange(len(pool)))], return_tensors="pt")["pixel_values"]
    assert torch.equal(got, expected)
    assert source.describe()["resize_filter"] == "Gemma3ImageProcessor:bilinear"


def test_top_images_are_the_ones_the_seeds_processor_path_picks(seed_files):
    """The seed's pass: the original files through the processor, the SAE on the hooked block's output,
    the mean over patches, the 5 best images with a mean above zero."""
    source = seed_source(seed_files)
    pool = source.pool("topk")
    model, processor = seed_model(seed_files, torch.float32)
    states = []
    handle = model.model.vision_tower.encoder.layers[STEERED - 1].register_forward_hook(
        lambda m, a, out: states.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            pixels = processor.image_processor([original_files(seed_files)[r] for r in pool.rows.tolist()],
                                               return_tensors="pt")["pixel_values"]
            model.model.vision_tower(pixel_values=pixels)
    finally:
        handle.remove()
    sae = source.sae()
    with torch.no_grad():
        means_FN = sae.encode(states[0].flatten(0, 1)).reshape(len(pool), -1, sae.d_sae).mean(1).T
    top = source.activations("topk")
    alive = [f for f in range(sae.d_sae) if (means_FN[f] > 0).any()]
    assert alive
    for f in alive:
        order = torch.argsort(means_FN[f], descending=True, stable=True)
        expected = [i for i in order.tolist() if means_FN[f, i] > 0][:5]
        got = [i for i, s in zip(top.ids([f], 5)[0].tolist(), top.score_FK[f, :5].tolist()) if s > 0]
        assert got == expected, f


def test_cast_whole_is_the_seeds_model_to_bfloat16(seed_files):
    source = seed_source(seed_files, "bfloat16")
    assert source.cast == "whole" and source.describe()["cast"] == "whole"
    ours, (theirs, _) = source.vlm.model, seed_model(seed_files, torch.bfloat16)
    mine, seeds = dict(ours.named_buffers()), dict(theirs.named_buffers())
    assert set(mine) == set(seeds)
    assert all(mine[n].dtype == seeds[n].dtype and torch.equal(mine[n], seeds[n]) for n in mine)
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters()))


def steering_context(root, dtype: str, vector_dtype: str | None = None) -> Context:
    return Context(seed_source(root, dtype), MethodConfig(steering_coeff=COEFF, vector_dtype=vector_dtype))


def test_the_steered_state_is_the_seeds_bit_for_bit_in_bf16(seed_files):
    ctx = steering_context(seed_files, "bfloat16")
    assert ctx.config.vector_dtype == "model"
    model, processor = seed_model(seed_files, torch.bfloat16)
    sae = ctx.sae
    white = Image.new("RGB", (224, 224), "white")  # the seed's empty image
    pixels = processor.image_processor([white], return_tensors="pt")["pixel_values"].to(torch.bfloat16)
    block = model.model.vision_tower.encoder.layers[STEERED - 1]
    for f in range(sae.d_sae):
        row_D = sae.W_dec[f].to(torch.bfloat16)  # the seed's SAE, cast to bf16 with the model
        seen: list[torch.Tensor] = []
        handle = block.register_forward_hook(seed_hook(row_D, seen=seen))
        try:
            with torch.no_grad():
                features = model.get_image_features(pixel_values=pixels).pooler_output
        finally:
            handle.remove()
        vlm = ctx.source.vlm
        ours = intervene(vlm.tower_prefix(pixels, STEERED), ctx.steering_vectors([f]), None)
        assert torch.equal(ours, seen[0]), f
        assert torch.equal(vlm.image_features(ours, STEERED), features), f
    fp32_vectors = steering_context(seed_files, "bfloat16", "float32").steering_vectors(list(range(sae.d_sae)))
    assert not torch.equal(fp32_vectors.to(torch.bfloat16), ctx.steering_vectors(list(range(sae.d_sae))))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_steering_answers_are_the_seeds(seed_files, dtype):
    """Greedy answers to the paper's prompt on the white image, steered at every tower token: the
    seed's generate with its hook, cleaned as its code cleans them, equal featurebench's."""
    ctx = steering_context(seed_files, dtype)
    torch_dtype = getattr(torch, dtype)
    model, processor = seed_model(seed_files, torch_dtype)
    processor.tokenizer.padding_side = "left"
    features = list(range(ctx.sae.d_sae))
    ours = ctx.answer(ctx.empty_images(len(features)), ctx.steering_vectors(features), features=features)
    block = model.model.vision_tower.encoder.layers[STEERED - 1]
    content = [{"type": "image"}, {"type": "text", "text": PROMPT}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)
    white = Image.new("RGB", (224, 224), "white")
    for f, answer in zip(features, ours):
        enc = processor(images=[[white]], text=[text], return_tensors="pt")
        enc["pixel_values"] = enc["pixel_values"].to(torch_dtype)
        handle = block.register_forward_hook(seed_hook(ctx.sae.W_dec[f].to(torch_dtype)))
        try:
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=4, do_sample=False)
        finally:
            handle.remove()
        raw = processor.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()
        assert str(answer) == clean_answer(raw, PAPER_REMOVED, True), f
