"""VLM adapters on tiny random-weight checkpoints of the real model classes, saved with
`save_pretrained` (model and processor, with an offline word-level tokenizer carrying the family's
special tokens and a chat template in the family's format) and loaded through `load_vlm`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.models.adapters import ADAPTERS, load_vlm
from benchmark.registry import UsageError
from benchmark.steering.hook import steer
from benchmark.testing import (  # noqa: F401  (re-exported: other test modules import them from here)
    FAMILIES,
    GRID,
    PATCH,
    PROMPT,
    SIZE,
    STEERED,
    save_tiny_checkpoint,
)


def planted_image(value: int, patch: tuple[int, int] | None = None) -> np.ndarray:
    """A flat image; with `patch`, only that patch's pixels are set to a different colour."""
    image = np.full((SIZE, SIZE, 3), value, np.uint8)
    if patch is not None:
        r, c = patch
        image[r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = (255, 0, 60)
    return image


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_through_the_user_path(vlms, family):
    vlm = vlms[family]
    assert isinstance(vlm.model, ADAPTERS.get(family).model_class)
    assert vlm.dtype == torch.float32 and vlm.model.config._attn_implementation == "sdpa"
    assert vlm.grid == (GRID, GRID)
    assert vlm.token_patches().shape == (vlm.prefix_tokens + GRID * GRID, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_loading_straight_to_the_device_gives_the_plain_from_pretrained_model(vlm_checkpoints, family):
    """The user path loads with a device_map (no host copy on a GPU); the tensors must be exactly
    those of a plain `from_pretrained`, and none left on another device."""
    path = vlm_checkpoints[family]
    plain = ADAPTERS.get(family).model_class.from_pretrained(path, dtype=torch.float32).state_dict()
    loaded = load_vlm(family, str(path), "cpu", torch.float32).model.state_dict()
    assert loaded.keys() == plain.keys()
    assert all(torch.equal(loaded[name], tensor) and loaded[name].device.type == "cpu" for name, tensor in plain.items())


@pytest.mark.parametrize("family", FAMILIES)
def test_split_tower_equals_the_models_image_features(vlms, family):
    vlm = vlms[family]
    enc = vlm.encode([[planted_image(30), planted_image(200, (1, 2))]], PROMPT)
    expected = vlm.model.get_image_features(pixel_values=enc["pixel_values"]).pooler_output
    expected = torch.stack(list(expected)) if isinstance(expected, (list, tuple)) else expected
    for state in range(1, vlm.read_state + 1):
        got = vlm.image_features(vlm.tower_prefix(enc["pixel_values"], state), state)
        assert got.shape == (2, vlm.tokens_per_image, vlm.model.config.text_config.hidden_size)
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_steering_moves_logits_and_a_zero_vector_does_not(vlms, family):
    vlm = vlms[family]
    enc = vlm.encode([[planted_image(120)], [planted_image(40)]], PROMPT)
    layer = vlm.layer(STEERED)
    d = vlm.model.config.vision_config.hidden_size
    with torch.no_grad():
        plain = vlm.model(**enc).logits[:, -1]
        with steer(layer, torch.zeros(2, d)):
            zero = vlm.model(**enc).logits[:, -1]
        with steer(layer, 5.0 * torch.randn(2, d, generator=torch.Generator().manual_seed(0))):
            steered = vlm.model(**enc).logits[:, -1]
    assert torch.equal(zero, plain)
    assert (steered - plain).abs().amax(dim=1).min() > 1e-2  # every row moves


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("patch", [(0, 3), (2, 1)])
def test_token_patch_map_finds_a_planted_patch(vlms, family, patch):
    """Only the pixels of patch (r, c) change; before any attention (the first block's input),
    only the token the map assigns to (r, c) may change."""
    vlm = vlms[family]
    seen = []
    handle = vlm.tower_layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        for image in (planted_image(128), planted_image(128, patch)):
            vlm.model.get_image_features(pixel_values=vlm.encode([[image]], PROMPT)["pixel_values"])
    finally:
        handle.remove()
    changed = ((seen[1] - seen[0]).abs().amax(dim=-1) > 1e-6)[0]
    expected = (vlm.token_patches() == torch.tensor(patch)).all(dim=1)
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_batches_rows_with_different_image_counts(vlms, family):
    vlm = vlms[family]
    rows = [[planted_image(10), planted_image(250)], [planted_image(90)], [planted_image(10), planted_image(250)]]
    readable = {"suppress_tokens": vlm.processor.tokenizer.all_special_ids}  # random weights like special tokens
    batched = vlm.generate(rows, PROMPT, max_new_tokens=4, **readable)
    one_by_one = [vlm.generate([row], PROMPT, max_new_tokens=4, **readable)[0] for row in rows]
    assert batched == one_by_one
    assert batched[0] == batched[2] and all(len(answer.split()) == 4 for answer in batched)


def test_the_prompt_follows_the_checkpoints_chat_template(vlms):
    assert vlms["llava"].prompt_text(2, PROMPT) == f"USER: <image>\n<image>\n{PROMPT} ASSISTANT:"


def test_answers_begin_with_the_forced_prefix_which_is_never_decoded(vlms):
    vlm = vlms["llava"]
    assert vlm.prompt_text(1, PROMPT, "The element is") == f"USER: <image>\n{PROMPT} ASSISTANT: The element is"
    plain, forced = (vlm.encode([[planted_image(10)]], PROMPT, prefix)["input_ids"][0] for prefix in ("", "The element is"))
    prefix_ids = vlm.processor.tokenizer(" The element is", add_special_tokens=False)["input_ids"]
    assert forced.tolist() == plain.tolist() + prefix_ids  # the prefix is prompt, not answer
    readable = {"suppress_tokens": vlm.processor.tokenizer.all_special_ids}
    (answer,) = vlm.generate([[planted_image(10)]], PROMPT, max_new_tokens=3, answer_prefix="The element is", **readable)
    assert len(answer.split()) == 3  # only the new tokens


def test_steering_after_the_read_state_is_refused(vlms):
    with pytest.raises(ValueError, match="outside"):
        vlms["llava"].layer(3)  # LLaVA reads hidden state 2 of 3


def test_unknown_family_and_missing_checkpoint_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="llava"):
        load_vlm("lava", str(tmp_path))
    with pytest.raises(UsageError, match="cannot load"):
        load_vlm("llava", str(tmp_path / "nowhere"))


@pytest.mark.parametrize("family", FAMILIES)
def test_placeholder_prompts_are_what_the_processor_gives(vlms, family):
    """Random-weight benchmarks have no processor: their prompts are built from `placeholder_image_ids`
    and `placeholder_inputs`, which must match what the real processor expands images into (Gemma 3's
    `<start_of_image>` and `<end_of_image>` around the image tokens) and the inputs it gives with them."""
    vlm = vlms[family]
    enc = vlm.encode([[planted_image(30), planted_image(200)]], PROMPT)
    ids_S, block = enc["input_ids"][0].tolist(), vlm.placeholder_image_ids().tolist()
    starts, i = [], 0
    while i < len(ids_S):  # non-overlapping: LLaVA's two blocks are one run of image tokens
        if ids_S[i:i + len(block)] == block:
            starts.append(i)
            i += len(block)
        else:
            i += 1
    assert len(starts) == 2
    rest = [t for i, t in enumerate(ids_S) if not any(s <= i < s + len(block) for s in starts)]
    framing = {v for k, v in vlm.model.config.to_dict().items()  # image_token_id(x), boi_ and eoi_token_index
               if k.split("_")[0] in ("image", "boi", "eoi") and k.endswith(("_token_index", "_token_id"))}
    assert vlm.model.config.image_token_id in framing and not set(rest) & framing  # none outside the two blocks
    for name, value in vlm.placeholder_inputs(enc["input_ids"]).items():
        assert torch.equal(value, enc[name]), name
