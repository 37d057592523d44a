"""Tiny real-model files, written to a directory, for the tests and the scale bench.

Each builder here saves random-weight models of the real classes the benchmark opens (a LLaVA, a
Gemma 3 or an InternVL checkpoint with its processor, an SAE in the featurebench or the seed paper's
dictionary_learning format, an open_clip scorer) exactly as a user's files would lie on disk, so the
code under test loads them through its ordinary path. They live in one module, outside `tests/`, so
that the test session builds each set of files once (the session-scoped fixtures of
`tests/conftest.py` call these functions) and the scale bench (`benchmark.bench.scale`) builds its
stand-in with the same code as the tests' checkpoints. No pytest here: plain functions of a
directory, returning what they wrote.

    save_tiny_checkpoint("llava", path, seed=3)  # a 32-wide LLaVA on 28 px images, 4 x 4 patches
    save_vlm_checkpoints(root)                   # one of each family under root, by name
    write_real_model_files(root); tables(root)   # checkpoints, SAE, images and scorer; a run's tables
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.models.sae import SAE

SIZE, PATCH = 28, 7
"""The tiny checkpoints' image side and patch side: a 4 x 4 patch grid."""
GRID = SIZE // PATCH
WIDTH = 32
"""Tower and language-model width of every tiny checkpoint: narrow, so a CPU runs them in seconds."""
FAMILIES = ("llava", "gemma3", "internvl")
STEERED = 2
"""The tower hidden state the tests steer; LLaVA (3 blocks, reading -2) reads exactly this one."""
PROMPT = "describe what you see ."
WORDS = ("<pad>", "<unk>", "<bos>", "<eos>", "user", "model", "assistant", "USER:", "ASSISTANT:", "describe", "what",
         "you", "see", ".", "a", "red", "green", "circle", "square", "nothing")
"""The word-level vocabulary (offline: no tokenizer download), before the family's special tokens."""

SPECIALS = {
    "llava": {"image_token": "<image>"},
    "gemma3": {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
    "internvl": {"context_image_token": "<IMG_CONTEXT>", "start_image_token": "<img>", "end_image_token": "</img>",
                 "video_token": "<video>"},
}
_TEXT = "{% for c in messages[0]['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
_IMAGES = "{% for c in messages[0]['content'] %}{% if c['type'] == 'image' %}IMAGE{% endif %}{% endfor %}"
TEMPLATES = {  # each family's real single-turn layout (images, then the text, as the adapters send them)
    "llava": "USER: " + _IMAGES.replace("IMAGE", "<image>\n") + _TEXT
             + "{% if add_generation_prompt %} ASSISTANT:{% endif %}",
    "gemma3": "{{ bos_token }}<start_of_turn>user\n" + _IMAGES.replace("IMAGE", "<start_of_image>") + _TEXT
              + "<end_of_turn>\n{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
    "internvl": "<|im_start|>user\n" + _IMAGES.replace("IMAGE", "<IMG_CONTEXT>\n") + _TEXT
                + "<|im_end|>\n{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}

SCORER = "featurebench-test-scorer"
"""The open_clip model name `write_real_model_files` registers for its scorer (as open_clip knows ViT-L-14)."""
IMAGES = 120
"""Images in `write_real_model_files`' folder; scoring_fraction 0.5 holds out 60, more than simulation's 50
top records."""


def _tokenizer(family: str, max_length: int):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*WORDS, *SPECIALS[family].values()])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens=SPECIALS[family],
                                   model_max_length=max_length)


def _processor(family: str, tok, image_size: int, patch: int, image_tokens: int):
    from transformers import (
        CLIPImageProcessor,
        Gemma3ImageProcessor,
        Gemma3Processor,
        GotOcr2ImageProcessor,
        InternVLProcessor,
        InternVLVideoProcessor,
        LlavaProcessor,
    )

    square = {"height": image_size, "width": image_size}
    if family == "llava":
        return LlavaProcessor(CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=square), tok,
                              patch_size=patch, vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=TEMPLATES[family])
    if family == "gemma3":
        return Gemma3Processor(Gemma3ImageProcessor(size=square), tok, image_seq_length=image_tokens,
                               chat_template=TEMPLATES[family])
    return InternVLProcessor(GotOcr2ImageProcessor(size=square, crop_to_patches=False), tok, InternVLVideoProcessor(),
                             image_seq_length=image_tokens, chat_template=TEMPLATES[family])


def _config(family: str, tok, tower_blocks: int, image_size: int, patch: int, image_tokens: int):
    from benchmark.models.adapters import ADAPTERS

    ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.pad_token_id}
    vision = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": tower_blocks,
              "num_attention_heads": 2, "image_size": image_size, "patch_size": patch}
    text = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, **ids}
    adapter = ADAPTERS.get(family)
    if family == "llava":
        return adapter.build_config(vision, text, image_token_id=tok.image_token_id)
    if family == "gemma3":
        return adapter.build_config(vision, {**text, "head_dim": 8, "sliding_window": 16},
                                    mm_tokens_per_image=image_tokens, image_token_index=tok.image_token_id,
                                    boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id)
    return adapter.build_config(vision, text, image_token_id=tok.context_image_token_id)


def save_tiny_checkpoint(family: str, path: Path, seed: int = 0, tower_blocks: int = 3, image_size: int = SIZE,
                         patch: int = PATCH, image_tokens: int = 4, max_length: int = 512) -> Path:
    """A random-weight checkpoint of the family's real model class and its processor (an offline
    word-level tokenizer carrying the family's special tokens, and a chat template in the family's
    format), saved with `save_pretrained` at `path`. Weights are drawn wide (std 0.3; Gemma 3's
    projector starts at zero) so that steering visibly moves logits. `image_tokens`: the image tokens
    the language model receives per image, for the families that pool the tower's (Gemma 3, InternVL;
    LLaVA receives every patch and its CLS); the defaults are the tests' 28 px, 4 x 4 patch grid."""
    from benchmark.models.adapters import ADAPTERS

    tok = _tokenizer(family, max_length)
    torch.manual_seed(seed)
    model = ADAPTERS.get(family).model_class(_config(family, tok, tower_blocks, image_size, patch, image_tokens))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(path)
    _processor(family, tok, image_size, patch, image_tokens).save_pretrained(path)
    return Path(path)


def save_vlm_checkpoints(root: Path, families: tuple[str, ...] = FAMILIES, seed: int = 3) -> dict[str, Path]:
    """One tiny checkpoint per family at root/<family>. Seed 3: a seed whose steered answers vary
    with the steering vector (the engine tests need answers that differ)."""
    return {family: save_tiny_checkpoint(family, Path(root) / family, seed=seed) for family in families}


def tiny_sae() -> SAE:
    """A TopK SAE (k 4) of 16 latents on the 32-wide towers: random encoder, decoder tied to it with
    unit rows. The same weights on every call (seed 0)."""
    torch.manual_seed(0)
    sae = SAE(WIDTH, 16, k=4)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.copy_(sae.W_enc.T)
        sae.normalize_decoder()
    return sae


def write_dictionary_learning(dpath: Path, sae: SAE, layer: int = 1) -> Path:
    """The seed paper's SAE files: `ae.pt` (AutoEncoderTopK's state) and `config.json` naming
    `layer` (the block whose output it reads: hidden state layer + 1), in `dpath` (made with its
    parents), e.g. `.../trainer_0`."""
    dpath = Path(dpath)
    dpath.mkdir(parents=True)
    torch.save({"encoder.weight": sae.W_enc.T.contiguous(), "encoder.bias": sae.b_enc, "decoder.weight":
                sae.W_dec.T.contiguous(), "b_dec": sae.b_dec, "k": torch.tensor(sae.k), "threshold": torch.tensor(-1.0)},
               dpath / "ae.pt")
    trainer = {"dict_class": "AutoEncoderTopK", "activation_dim": sae.d_in, "dict_size": sae.d_sae, "k": sae.k,
               "layer": layer}
    (dpath / "config.json").write_text(json.dumps({"trainer": trainer}))
    return dpath


def write_real_model_files(root: Path) -> Path:
    """What a user running on real models has on disk, all under `root`: tiny LLaVA and Gemma 3
    checkpoints (`llava/`, `gemma3/`, seed 3), a featurebench SAE on their towers' hidden state
    `STEERED` (`sae.safetensors`), a folder of `IMAGES` images (`images/`: a flat colour with one
    patch of another), and an open_clip scorer registered with open_clip under the name `SCORER`
    with its weights file, whose 2 x 2 patch grid differs from the towers' 4 x 4 as in every real
    setup; and `scorer-pt/`, a scorer directory with a .pt where its safetensors file should be (for
    the refusal). `tables(root)` names them as a run config's tables. Registering the scorer is a
    process-wide side effect of open_clip's, as a user's `add_model_config` is."""
    import open_clip
    from PIL import Image

    from benchmark.models.sae_formats import save_sae
    from benchmark.models.scorer import Scorer

    root = Path(root)
    save_vlm_checkpoints(root, ("llava", "gemma3"), seed=3)
    save_sae(tiny_sae(), root / "sae.safetensors", hidden_state=STEERED)
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(IMAGES):  # a flat colour with one patch of another
        image = np.full((SIZE, SIZE, 3), rng.integers(0, 256, 3), np.uint8)
        r, c = rng.integers(0, SIZE // PATCH, 2)
        image[r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = rng.integers(0, 256, 3)
        Image.fromarray(image).save(root / "images" / f"{i:03}.png")
    config = {"embed_dim": 16, "vision_cfg": {"image_size": SIZE, "patch_size": 2 * PATCH, "width": 32, "layers": 1,
                                              "head_width": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (root / f"{SCORER}.json").write_text(json.dumps(config))
    open_clip.add_model_config(root / f"{SCORER}.json")  # as open_clip knows ViT-L-14
    torch.manual_seed(1)
    Scorer(open_clip.create_model(SCORER), open_clip.get_tokenizer(SCORER), SCORER).save_weights(root)
    (root / "scorer-pt").mkdir()
    (root / "scorer-pt" / f"{SCORER}.json").write_text(json.dumps(config))
    (root / "scorer-pt" / "open_clip_model.pt").write_bytes(b"not safetensors")
    return root


def tables(root: Path, family: str = "llava") -> dict[str, dict[str, Any]]:
    """The [vlm], [sae], [scorer], [pool] and [prompts] tables of a run config naming the files
    `write_real_model_files(root)` wrote, with the `family` checkpoint as the VLM."""
    from benchmark.models.scorer import WEIGHTS

    root = Path(root)
    return {"vlm": {"family": family, "path": str(root / family), "device": "cpu", "dtype": "float32",
                    "max_new_tokens": 3},
            "sae": {"path": str(root / "sae.safetensors")},
            "scorer": {"model": SCORER, "pretrained": str(root / WEIGHTS)},
            "pool": {"source": str(root / "images"), "scoring_fraction": 0.5},
            "prompts": {"describe": "describe what you see .", "shared": "what do you see ."}}


def write_toml(fpath: Path, flat: dict[str, Any], models: dict[str, dict[str, Any]]) -> str:
    """A run config at `fpath`: the `flat` settings, then one table per entry of `models`; its path."""
    def value(v: Any) -> str:
        return json.dumps(v)  # a JSON string or number is a TOML one

    lines = [f"{k} = {value(v)}" for k, v in flat.items()]
    for name, table in models.items():
        lines += [f"[{name}]", *(f"{k} = {value(v)}" for k, v in table.items())]
    Path(fpath).write_text("\n".join(lines) + "\n")
    return str(fpath)
