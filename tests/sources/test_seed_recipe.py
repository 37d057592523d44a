"""The seed protocol against the seed paper's own recipe, written out here from its description
(`../shared/PAPER_PROTOCOL.md`; its code is HPAI-BSC/vision-interp) on a tiny Gemma 3 with a
dictionary_learning SAE (the seed's files) and a folder of non-square image files:

- its top images come from the ORIGINAL files handed to the model's processor, which resizes them
  with its own filter (Gemma 3: bilinear); featurebench's pool, resized whole, must give the same
  pixel values and so the same top images;
- in bf16 it casts the whole model with `model.to(bfloat16)` and forms `coeff x decoder row` in
  bf16 (its SAE is cast with the model), added to the layer's bf16 output by a forward hook; the
  steered tower state, and the answer, must be the same bit for bit;
- its top-k and hybrid answers (its top-k pass, masks, one user turn, greedy generate and, for the
  hybrid, its hook where the latent fires) must be featurebench's `topk` and `hybrid` explanations,
  on images already at the tower's size (its masks are drawn before the processor resizes: a genuine
  difference of the seed), in float32 and in bf16 (where its SAE encodes in bf16 with the model, as
  the seed protocol's `sae_dtype = "model"` does, ReLU before an unsorted top-k as
  dictionary_learning's, so exact bf16 ties fall alike)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Gemma3ForConditionalGeneration, GenerationConfig

import methods  # noqa: F401  (registers the built-in methods)
from benchmark.config.method import MethodConfig
from benchmark.config.models import models_config
from benchmark.config.protocol import PAPER_REMOVED, clean_answer
from benchmark.config.resolve import resolve
from benchmark.explaining.context import Context
from benchmark.explaining.explain import explain
from benchmark.registry import METHODS
from benchmark.sources.source import Source
from benchmark.steering.interventions import intervene
from benchmark.testing import PROMPT, STEERED, save_tiny_checkpoint, tiny_sae, write_dictionary_learning

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


def seed_source(root, dtype: str = "float32", images: str = "images") -> Source:
    tables = {"vlm": {"family": "gemma3", "path": str(root / "gemma3"), "device": "cpu", "dtype": dtype,
                      "max_new_tokens": 4},
              "sae": {"path": str(root / "sae" / "trainer_0")},
              "pool": {"source": str(root / images), "scoring_fraction": 0.25},
              "prompts": {"describe": PROMPT, "shared": PROMPT}}  # words the tiny tokenizer knows: the paper's
    # are <unk> to it, and every top-k answer to them is empty
    return Source(models_config(tables, "test"), "gemma3", protocol="seed")


def seed_model(root, dtype: torch.dtype):
    """The seed's model: loaded, then cast whole (`utils/utils.py` load_model)."""
    model = Gemma3ForConditionalGeneration.from_pretrained(root / "gemma3", attn_implementation="sdpa")
    return model.to(dtype).eval(), AutoProcessor.from_pretrained(root / "gemma3")


def seed_hook(vector_D: torch.Tensor, positions: list | None = None, seen: list | None = None,
              coeff: float = COEFF):
    """The seed's forward hook on the SAE's block: `coeff x row`, formed in the state's dtype, added
    at every token (or at `positions[b]` of row b); `seen` collects the steered state."""
    def hook(module, args, output):
        state = output[0] if isinstance(output, tuple) else output
        if positions is None:
            state += coeff * vector_D.to(state)
        else:
            for b, tokens in enumerate(positions):
                for t in tokens:
                    state[b, t, :] += coeff * vector_D.to(state)
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
    return Context(seed_source(root, dtype), resolve(MethodConfig(steering_coeff=COEFF, vector_dtype=vector_dtype), "seed"))


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


# --- Top-k and hybrid: the seed's recipe (its top-k pass, masks, one user turn, greedy generate, and for
# the hybrid its hook at the patches where the latent fires), written out here, against featurebench's
# `topk` and `hybrid` methods run through the harness (`benchmark.explaining.explain.explain`).

TOP_SHOWN = 5  # the seed's TOP_K_IMAGES
TOP_STORED = 10  # its top-k pass keeps the 10 best images per latent
HYBRID_COEFF = 50.0  # the paper's hybrid coefficient
TOWER_IMAGES = "tower_images"


@pytest.fixture(scope="module")
def tower_files(seed_files):
    """The seed fixture with a second folder of images already at the tower's size (28 px: 4 x 4
    patches of 7 px), so that the processor does not resize them: a flat colour with one or two blocks
    of another, at random places and sizes (not on the patch grid), so latents fire on some patches only."""
    side = seed_source(seed_files).vlm.model.config.vision_config.image_size
    rng = np.random.default_rng(1)
    (seed_files / TOWER_IMAGES).mkdir()
    for i in range(IMAGES):
        image = np.full((side, side, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(rng.integers(1, 3)):
            h, w = rng.integers(4, 16, 2)
            r, c = rng.integers(0, side - h), rng.integers(0, side - w)
            image[r:r + h, c:c + w] = rng.integers(0, 256, 3)
        Image.fromarray(image).save(seed_files / TOWER_IMAGES / f"{i:03}.png")
    return seed_files


def seed_sae(root, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The seed's SAE (dictionary_learning AutoEncoderTopK, read from its `ae.pt`), cast to the model's
    dtype as its scripts do (`sae.to(dtype)`)."""
    state = torch.load(root / "sae" / "trainer_0" / "ae.pt")
    return {name: (t.to(dtype) if t.is_floating_point() else t) for name, t in state.items()}


def seed_encode(sae: dict[str, torch.Tensor], x_ND: torch.Tensor) -> torch.Tensor:
    """AutoEncoderTopK.encode, in the SAE's dtype: relu of the encoder on x - b_dec, its k largest kept."""
    pre_NF = torch.relu(torch.nn.functional.linear(x_ND - sae["b_dec"], sae["encoder.weight"], sae["encoder.bias"]))
    top = pre_NF.topk(int(sae["k"]), dim=-1, sorted=False)
    return torch.zeros_like(pre_NF).scatter_(-1, top.indices, top.values)


def seed_top_images(root, rows: list[int], dtype: torch.dtype) -> dict[int, list[tuple[int, np.ndarray]]]:
    """The seed's top-k pass (`src/get_max_activating_vision.py`), run in `dtype` like its model and
    SAE: the pool's image
    files through the processor, the SAE on the hooked block's output, codes as (image, row, column,
    latent) in float32, each latent's images with a mean over patches above zero, its 10 best by that
    mean, each with its heatmap (the latent's codes on the patch grid). Latents that fire on no image
    have no entry (no `latent_<id>.pt`: the seed never explains them)."""
    model, processor = seed_model(root, dtype)
    files = [Image.open(root / TOWER_IMAGES / f"{r:03}.png").convert("RGB") for r in rows]
    pixels = processor.image_processor(files, return_tensors="pt")["pixel_values"].to(dtype)
    states = []
    handle = model.model.vision_tower.encoder.layers[STEERED - 1].register_forward_hook(
        lambda m, a, out: states.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            model.model.vision_tower(pixel_values=pixels)
    finally:
        handle.remove()
    grid = int(round(states[0].shape[1] ** 0.5))
    with torch.no_grad():
        codes = seed_encode(seed_sae(root, dtype), states[0].reshape(-1, states[0].shape[-1]).to(dtype))
    codes_NGGF = codes.reshape(len(rows), grid, grid, -1).float()
    means_NF = codes_NGGF.mean(dim=(1, 2))
    top: dict[int, list[tuple[int, np.ndarray]]] = {}
    for f in range(means_NF.shape[1]):
        firing = torch.nonzero(means_NF[:, f] > 0).flatten()
        if len(firing):
            best = firing[torch.argsort(means_NF[firing, f], descending=True)[:TOP_STORED]]
            top[f] = [(int(i), codes_NGGF[i, :, :, f].numpy()) for i in best]
    return top


def seed_masked(image: np.ndarray, heatmap_GG: np.ndarray) -> Image.Image:
    """The seed's mask (`utils/utils.py` create_masked_image): the patch grid's active cells upsampled
    to the image's own size with PIL's nearest filter, every other pixel set to 0."""
    mask = Image.fromarray((heatmap_GG > 0).astype(np.uint8) * 255).resize((image.shape[1], image.shape[0]),
                                                                         Image.NEAREST)
    out = image.copy()
    out[~np.array(mask).astype(bool)] = 0
    return Image.fromarray(out)


def seed_clean(raw: str) -> str:
    """The seed's clean-up of a completion: stripped, then each string of its list removed in order,
    stripped and `str.capitalize`d after each (`src/get_steering_explanations.py`)."""
    for phrase in PAPER_REMOVED:
        raw = raw.replace(phrase, "").strip().capitalize()
    return raw


def seed_answers(root, rows: list[int], dtype: torch.dtype, prompt: str, max_new_tokens: int,
                 coeff: float | None = None, latents: list[int] | None = None) -> dict[int, str]:
    """The seed's top-k (coeff None: steering type `none`) or hybrid (`steering_aided_top_k`) answers:
    per latent, its first 5 top images masked, one user turn [images..., prompt] through the processor's
    chat template, the inputs cast to the model's dtype, greedy `generate` with its generation config;
    for the hybrid a forward hook on the SAE's block adding coeff x the latent's decoder row (formed in
    the model's dtype, its SAE cast with the model) at each image's tokens where the latent fires
    (prefill only: the tower runs once). One latent per generate call: the seed batches 8, and pairs
    image b of a batch with vector row b, which for a latent with fewer than 5 images steers the others'
    images with the wrong direction (issue 31, item 3; featurebench rightly does not copy it); one
    latent per call is the seed's arithmetic without that bug, and no padding. `latents`: only these."""
    model, processor = seed_model(root, dtype)
    tokenizer = processor.tokenizer
    sae = seed_sae(root, dtype)
    block = model.model.vision_tower.encoder.layers[STEERED - 1]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                              temperature=0.0001, num_return_sequences=1)
    config.pad_token_id = tokenizer.pad_token_id
    out = {}
    for f, ranked in seed_top_images(root, rows, dtype).items():
        if latents is not None and f not in latents:
            continue
        shown = ranked[:TOP_SHOWN]
        files = [np.array(Image.open(root / TOWER_IMAGES / f"{rows[i]:03}.png").convert("RGB")) for i, _ in shown]
        images = [seed_masked(image, heatmap) for image, (_, heatmap) in zip(files, shown)]
        content = [*({"type": "image", "image": image} for image in images), {"type": "text", "text": prompt}]
        batch = processor.apply_chat_template([[{"role": "user", "content": content}]], add_generation_prompt=True,
                                              tokenize=True, return_dict=True, return_tensors="pt",
                                              padding=True).to(dtype)
        hooks = []
        if coeff is not None:
            positions = [np.flatnonzero(heatmap.flatten() > 0).tolist() for _, heatmap in shown]
            hooks.append(block.register_forward_hook(seed_hook(sae["decoder.weight"][:, f], positions, coeff=coeff)))
        try:
            with torch.no_grad():
                generated = model.generate(**batch, generation_config=config, output_scores=True,
                                           return_dict_in_generate=True, renormalize_logits=True,
                                           num_return_sequences=1)
        finally:
            for handle in hooks:
                handle.remove()
        new = generated.sequences[:, batch["input_ids"].shape[-1]:]
        out[f] = seed_clean(tokenizer.decode(new[0], skip_special_tokens=True).strip())
    return out


def featurebench_answers(root, dtype: str, method: str) -> tuple[Context, dict[int, str]]:
    """featurebench's `method` on every latent of the tower-size pool under the seed protocol, through
    the harness (the explanation store), the hybrid at the paper's absolute coefficient."""
    ctx = Context(seed_source(root, dtype, TOWER_IMAGES), resolve(MethodConfig(hybrid_coeff=HYBRID_COEFF), "seed"))
    return ctx, explain(ctx, method, METHODS.get(method), list(range(ctx.sae.d_sae)))


def seed_latents(root, rows: list[int], dtype: torch.dtype) -> tuple[list[int], list[int]]:
    """The latents the seed's pass in `dtype` shows top images of, and those that fire nowhere."""
    seeds = seed_top_images(root, rows, dtype)
    d_sae = seed_sae(root, dtype)["encoder.weight"].shape[0]
    return sorted(seeds), [f for f in range(d_sae) if f not in seeds]


def assert_shows_the_seeds(ctx: Context, root, seed: dict[int, list[tuple[int, np.ndarray]]],
                           latents: list[int]) -> int:
    """featurebench's top images of `latents` as top-k and hybrid show them equal the seed's, pixel for
    pixel, and where the latent fires, token for token; returns how many are masked in part."""
    rows = ctx.topk_pool.rows.tolist()
    shown_BKHWC, positions_BKT = ctx.shown_top_images(latents)
    partial = 0
    for b, f in enumerate(latents):
        expected = seed[f][:TOP_SHOWN]
        assert positions_BKT[b].any(-1).nonzero().flatten().tolist() == list(range(len(expected))), f
        assert ctx.top_ids([f])[0, :len(expected)].tolist() == [i for i, _ in expected], f
        for k, (i, heatmap) in enumerate(expected):
            image = np.array(Image.open(root / TOWER_IMAGES / f"{rows[i]:03}.png").convert("RGB"))
            assert np.array_equal(shown_BKHWC[b, k], np.array(seed_masked(image, heatmap))), (f, k)
            assert positions_BKT[b, k].nonzero().flatten().tolist() == np.flatnonzero(heatmap.flatten() > 0).tolist()
            partial += 0 < (heatmap > 0).sum() < heatmap.size
    return partial


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_top_images_and_masks_are_the_seeds_at_the_tower_size(tower_files, dtype):
    """What top-k and hybrid show: each latent's first 5 top images where it fires, masked, as the
    seed's pass and mask give them, pixel for pixel, and where it fires, token for token; a latent that
    fires on no top image shows none. Images at the tower's size (see `test_topk_answers_are_the_seeds`);
    in bf16 the SAE encodes in bf16, as the seed's does."""
    ctx = Context(seed_source(tower_files, dtype, TOWER_IMAGES), resolve(MethodConfig(hybrid_coeff=HYBRID_COEFF), "seed"))
    rows, torch_dtype = ctx.topk_pool.rows.tolist(), getattr(torch, dtype)
    seed = seed_top_images(tower_files, rows, torch_dtype)
    alike, silent = seed_latents(tower_files, rows, torch_dtype)
    assert alike == sorted(seed) and len(alike) + len(silent) == ctx.sae.d_sae
    assert len(alike) >= 4 and any(len(seed[f]) >= TOP_SHOWN for f in alike)
    assert any(len(seed[f]) < TOP_SHOWN for f in seed), "no latent fires on fewer than 5: firing_only untested"
    assert assert_shows_the_seeds(ctx, tower_files, seed, alike), "no top image masked in part: masks untested"
    if silent:
        assert not ctx.shown_top_images(silent)[1].any()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_topk_answers_are_the_seeds(tower_files, dtype):
    """featurebench's `topk` explanations under the seed protocol, through the harness, equal the
    seed's recipe's final strings (its top-k pass, masks, prompt, generate and clean-up); a latent
    that fires nowhere (which the seed never explains) gets an empty one.

    Where the two cannot agree they are compared where the difference does not arise:
    - images already at the tower's size: on others the seed masks the original image and then the
      processor resizes it (bilinear, blurring the mask's edges: `src/get_steering_explanations.py`
      masks with `create_masked_image` at the image's own size before `tokenized_batch`), where
      featurebench masks the image resized, so the images shown differ."""
    ctx, ours = featurebench_answers(tower_files, dtype, "topk")
    torch_dtype, rows = getattr(torch, dtype), ctx.topk_pool.rows.tolist()
    alike, silent = seed_latents(tower_files, rows, torch_dtype)
    seed = seed_answers(tower_files, rows, torch_dtype, PROMPT, ctx.source.max_new_tokens(True), latents=alike)
    assert sorted(seed) == alike and len(alike) >= 4
    assert {f: ours[f] for f in alike} == seed
    assert all(ours[f] == "" for f in silent)
    assert len(set(seed.values())) > 1, "every latent answered alike: the comparison would test nothing"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hybrid_answers_are_the_seeds(tower_files, dtype):
    """featurebench's `hybrid` explanations (coefficient 50, the paper's) under the seed protocol,
    through the harness, equal the seed's recipe's: top-k's inputs plus its hook adding 50 x the
    decoder row, formed in the model's dtype, at the tokens where the latent fires in each image,
    prefill only. Compared where the differences do not arise, as for top-k
    (`test_topk_answers_are_the_seeds`), and one latent per generate (`seed_answers`)."""
    ctx, ours = featurebench_answers(tower_files, dtype, "hybrid")
    torch_dtype, rows = getattr(torch, dtype), ctx.topk_pool.rows.tolist()
    alike, silent = seed_latents(tower_files, rows, torch_dtype)
    tokens = ctx.source.max_new_tokens(True)
    seed = seed_answers(tower_files, rows, torch_dtype, PROMPT, tokens, HYBRID_COEFF, alike)
    assert sorted(seed) == alike and len(alike) >= 4
    assert {f: ours[f] for f in alike} == seed
    assert all(ours[f] == "" for f in silent)
    unsteered = seed_answers(tower_files, rows, torch_dtype, PROMPT, tokens, latents=alike)
    assert any(seed[f] != unsteered[f] for f in alike), "the hybrid's steering changed no answer: it would test nothing"
