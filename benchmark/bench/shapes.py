"""Real VLM shapes with random weights: LLaVA-1.5-7B, Gemma-3-4B (the paper's main model) and
Gemma-3-27B, plus CPU-sized shapes of both families for tests.

Nothing is downloaded: a shape's config is built by hand with the real dimensions and the model is
instantiated directly on the device (bf16 on an accelerator). There is no tokenizer, so prompts are
synthetic ids of the real length (each image's image tokens, about 40 text tokens around them, as
the chat template and the paper's prompt give), and pixel values are made on the device.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import BaseImageProcessor, CLIPImageProcessor, Gemma3ImageProcessor

from benchmark.models.adapters import ADAPTERS
from benchmark.models.adapters.base import VLMAdapter


@dataclass(frozen=True)
class Shape:
    family: str
    vision: dict
    """Vision-tower config settings (the family's vision config class)."""
    text: dict
    """Language-model config settings."""
    sae_layer: int
    """Tower hidden state the SAE reads and steering writes."""
    top: dict = field(default_factory=dict)
    """Top-level config settings (image token ids, ...)."""
    prompt_tokens: int = 40
    """Text tokens around the images: chat template and prompt."""
    max_rows: int = 512
    """Features per `generate` at most; on CUDA free memory decides below it (`benchmark.steering.memory`)."""
    topk_batch: int = 256
    """Images per tower forward in the top-k activation pass."""


_CLIP_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
               "image_size": 336, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu"}
_SIGLIP_896 = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
               "image_size": 896, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}
_TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                "image_size": 28, "patch_size": 7}
_TINY_TEXT = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2,
              "pad_token_id": 0}

SHAPES: dict[str, Shape] = {
    # CLIP ViT-L/14-336 (577 tokens, read at hidden state 23 of 24) + Llama-2-7B; SAE as in Pach et al.
    "llava-1.5-7b": Shape(
        "llava", _CLIP_L_336,
        text={"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "pad_token_id": 32001},
        top={"image_token_id": 32000}, sae_layer=22),
    # SigLIP so400m at 896 px (4,096 tokens, pooled to 256) + Gemma-3-4B's text model: the paper's main
    # model and layer. RoPE settings are left at their defaults: they do not change the cost.
    "gemma-3-4b": Shape(
        "gemma3", _SIGLIP_896,
        text={"vocab_size": 262208, "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
              "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
              "sliding_window": 1024, "max_position_embeddings": 131072},
        top={"mm_tokens_per_image": 256}, sae_layer=16, topk_batch=64),
    # The same tower + Gemma-3-27B's text model.
    "gemma-3-27b": Shape(
        "gemma3", _SIGLIP_896,
        text={"vocab_size": 262208, "hidden_size": 5376, "intermediate_size": 21504, "num_hidden_layers": 62,
              "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128, "query_pre_attn_scalar": 168,
              "sliding_window": 1024, "max_position_embeddings": 131072},
        top={"mm_tokens_per_image": 256}, sae_layer=16, topk_batch=64),
    # LLaVA-1.5's prompt geometry (336 px, 576 image tokens, 2,920-token hybrid prompts) at CPU widths:
    # where batch size, cache and prompt length decide the cost, as on the GPU, but on 2 cores.
    "cpu-llava": Shape(
        "llava", {**_TINY_VISION, "hidden_size": 64, "intermediate_size": 128, "image_size": 336, "patch_size": 14},
        text={**_TINY_TEXT, "vocab_size": 4000, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 8,
              "num_attention_heads": 8, "num_key_value_heads": 8},
        top={"image_token_id": 3999}, sae_layer=1, max_rows=32, topk_batch=16),
    # CPU-sized shapes of both families, for tests.
    "tiny": Shape("llava", _TINY_VISION, _TINY_TEXT, top={"image_token_id": 63}, sae_layer=1, prompt_tokens=8,
                  max_rows=4, topk_batch=8),
    "tiny-gemma3": Shape("gemma3", _TINY_VISION, {**_TINY_TEXT, "head_dim": 8, "sliding_window": 16}, sae_layer=2,
                         top={"mm_tokens_per_image": 4, "image_token_index": 63, "boi_token_index": 61,
                              "eoi_token_index": 62}, prompt_tokens=8, max_rows=4, topk_batch=8),
}


def build_random_vlm(shape: Shape, device: str, dtype: torch.dtype) -> VLMAdapter:
    """The shape's model with random weights, built on the device (no CPU copy, no download)."""
    adapter = ADAPTERS.get(shape.family)
    config = adapter.build_config(shape.vision, shape.text, **shape.top)
    torch.manual_seed(0)
    with torch.device(device):
        model = adapter.model_class._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return adapter(model)


def image_processor(shape: Shape) -> BaseImageProcessor:
    """The family's own image processor at the shape's side (a real checkpoint ships it; random
    weights have none): CLIP's (shortest edge, centre crop) for LLaVA, Gemma 3's (resize) for Gemma."""
    vision = shape.vision
    side = vision["image_size"]
    if shape.family == "llava":
        return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return Gemma3ImageProcessor(size={"height": side, "width": side})


def synthetic_inputs(vlm: VLMAdapter, n_images: int, prompt_tokens: int, rows: int) -> dict[str, torch.Tensor]:
    """Encoded prompts as the processor would give them: half the text, each image's ids as the
    processor expands it (Gemma 3's between `<start_of_image>` and `<end_of_image>`), the other half;
    white pixel values (the empty image) for rows x n_images images."""
    g = torch.Generator().manual_seed(0)
    text = torch.randint(3, min(1000, vlm.model.config.text_config.vocab_size - 3), (prompt_tokens,), generator=g)
    image = vlm.placeholder_image_ids()
    ids = torch.cat([text[:prompt_tokens // 2], *[image] * n_images, text[prompt_tokens // 2:]])
    inputs = vlm.placeholder_inputs(ids.expand(rows, -1).to(vlm.device))
    inputs["pixel_values"] = white_pixels(vlm, rows * n_images)
    return inputs


def white_pixels(vlm: VLMAdapter, n: int) -> torch.Tensor:
    """(n, 3, H, W) on the device: white after normalisation is about +1 (+2 for CLIP's statistics)."""
    size = vlm.model.config.vision_config.image_size
    side = size if isinstance(size, int) else size[0]
    return torch.ones(n, 3, side, side, device=vlm.device, dtype=vlm.dtype)
