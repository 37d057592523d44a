"""VLM adapters on tiny random-weight checkpoints of the real model classes, saved with
`save_pretrained` (model and processor, with an offline word-level tokenizer carrying the family's
special tokens and a chat template in the family's format) and loaded through `load_vlm`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import (
    CLIPImageProcessor,
    Gemma3ImageProcessor,
    Gemma3Processor,
    GotOcr2ImageProcessor,
    InternVLProcessor,
    InternVLVideoProcessor,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from benchmark.models.adapters import ADAPTERS, load_vlm
from benchmark.registry import UsageError
from benchmark.steering.hook import steer

SIZE, PATCH = 28, 7  # a 4 x 4 patch grid
GRID = SIZE // PATCH
FAMILIES = ("llava", "gemma3", "internvl")
STEERED = 2  # the tower hidden state tests steer; LLaVA (3 blocks, reading -2) reads exactly this one
PROMPT = "describe what you see ."
WORDS = ("<pad>", "<unk>", "<bos>", "<eos>", "user", "model", "assistant", "USER:", "ASSISTANT:", "describe", "what",
         "you", "see", ".", "a", "red", "green", "circle", "square", "nothing")

SPECIALS = {
    "llava": {"image_token": "<image>"},
    "gemma3": {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
    "internvl": {"context_image_token": "<IMG_CONTEXT>", "start_image_token": "<img>", "end_image_token": "</img>",
                 "video_token": "<video>"},
}
_TEXT = "{% for c in messages[0]['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
_IMAGES = "{% for c in messages[0]['content'] %}{% if c['type'] == 'image' %}IMAGE{% endif %}{% endfor %}"
TEMPLATES = {  # each family's real single-turn layout
    "llava": "USER: " + _IMAGES.replace("IMAGE", "<image>\n") + _TEXT
             + "{% if add_generation_prompt %} ASSISTANT:{% endif %}",
    "gemma3": "{{ bos_token }}<start_of_turn>user\n" + _IMAGES.replace("IMAGE", "<start_of_image>") + _TEXT
              + "<end_of_turn>\n{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    "internvl": "<|im_start|>user\n" + _IMAGES.replace("IMAGE", "<IMG_CONTEXT>\n") + _TEXT
                + "<|im_end|>\n{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}


def _tokenizer(family: str) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate([*WORDS, *SPECIALS[family].values()])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens=SPECIALS[family], model_max_length=512)


def _processor(family: str, tok: PreTrainedTokenizerFast):
    square = {"height": SIZE, "width": SIZE}
    if family == "llava":
        return LlavaProcessor(CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size=square), tok, patch_size=PATCH,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=TEMPLATES[family])
    if family == "gemma3":
        return Gemma3Processor(Gemma3ImageProcessor(size=square), tok, image_seq_length=4,
                               chat_template=TEMPLATES[family])
    return InternVLProcessor(GotOcr2ImageProcessor(size=square, crop_to_patches=False), tok, InternVLVideoProcessor(),
                             image_seq_length=4, chat_template=TEMPLATES[family])


def _config(family: str, tok: PreTrainedTokenizerFast, tower_blocks: int = 3):
    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.pad_token_id}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": tower_blocks, "num_attention_heads": 2,
              "image_size": SIZE, "patch_size": PATCH}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, **ids}
    if family == "llava":
        return ADAPTERS.get(family).build_config(vision, text, image_token_id=tok.image_token_id)
    if family == "gemma3":
        return ADAPTERS.get(family).build_config(vision, {**text, "head_dim": 8, "sliding_window": 16},
                                                 mm_tokens_per_image=4, image_token_index=tok.image_token_id,
                                                 boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id)
    return ADAPTERS.get(family).build_config(vision, text, image_token_id=tok.context_image_token_id)


def save_tiny_checkpoint(family: str, path: Path, seed: int = 0, tower_blocks: int = 3) -> None:
    """A random-weight checkpoint of the family's real model class, and its processor. Weights are
    drawn wide (std 0.3; Gemma 3's projector starts at zero) so that steering visibly moves logits."""
    tok = _tokenizer(family)
    adapter = ADAPTERS.get(family)
    torch.manual_seed(seed)
    model = adapter.model_class(_config(family, tok, tower_blocks))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(path)
    _processor(family, tok).save_pretrained(path)


def planted_image(value: int, patch: tuple[int, int] | None = None) -> np.ndarray:
    """A flat image; with `patch`, only that patch's pixels are set to a different colour."""
    image = np.full((SIZE, SIZE, 3), value, np.uint8)
    if patch is not None:
        r, c = patch
        image[r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = (255, 0, 60)
    return image


@pytest.fixture(scope="module")
def vlms(tmp_path_factory):
    out = {}
    for family in FAMILIES:
        path = tmp_path_factory.mktemp(family)
        save_tiny_checkpoint(family, path)
        out[family] = load_vlm(family, str(path), "cpu", torch.float32)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_through_the_user_path(vlms, family):
    vlm = vlms[family]
    assert isinstance(vlm.model, ADAPTERS.get(family).model_class)
    assert vlm.dtype == torch.float32 and vlm.model.config._attn_implementation == "sdpa"
    assert vlm.grid == (GRID, GRID)
    assert vlm.token_patches().shape == (vlm.prefix_tokens + GRID * GRID, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_loading_straight_to_the_device_gives_the_plain_from_pretrained_model(family, tmp_path):
    """The user path loads with a device_map (no host copy on a GPU); the tensors must be exactly
    those of a plain `from_pretrained`, and none left on another device."""
    save_tiny_checkpoint(family, tmp_path, seed=3)
    plain = ADAPTERS.get(family).model_class.from_pretrained(tmp_path, dtype=torch.float32).state_dict()
    loaded = load_vlm(family, str(tmp_path), "cpu", torch.float32).model.state_dict()
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
