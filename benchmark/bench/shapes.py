"""`run_shape_bench`: the steering engine against the one-feature-per-generate loop on the real
model shapes (LLaVA-1.5-7B, Gemma-3-27B), in the same run, on the same model.

With random weights nothing is downloaded: the shape's config is built by hand with the real
dimensions and the model is instantiated directly on the device in bf16. There is no tokenizer, so
prompts are synthetic ids of the real length (each image's image tokens, about 40 text tokens
around them, as the chat template and the paper's prompt give); every `generate` is forced to emit
exactly the shape's number of new tokens, so timings do not depend on where random weights stop.
Pixel values are made on the device: image preprocessing on the CPU is not timed.

Timed: steering (the white image, a vector at every token) and hybrid (5 images per prompt, vectors
at 20% of the tower tokens) as features per second, the loop (hook + `generate`, batch 1) against
the engine (`benchmark.engine`, large batches); the top-k activation pass (tower up to the SAE
layer) in images per second; peak accelerator memory of each.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from benchmark.models.adapters import ADAPTERS, load_vlm
from benchmark.models.adapters.base import VLMAdapter, default_dtype
from benchmark.registry import UsageError
from benchmark.steering.engine import SteeringEngine
from benchmark.steering.hook import steer

HYBRID_IMAGES = 5
HYBRID_ACTIVE = 0.2
"""Share of tower tokens where a hybrid row is steered (where the feature fires in its top images)."""


@dataclass(frozen=True)
class Shape:
    family: str
    vision: dict
    """Vision-tower config settings (the family's vision config class)."""
    text: dict
    """Language-model config settings."""
    sae_layer: int
    """Tower hidden state the SAE reads and steering writes."""
    new_tokens: int
    top: dict = field(default_factory=dict)
    """Top-level config settings (image token ids, ...)."""
    prompt_tokens: int = 40
    """Text tokens around the images: chat template and prompt."""
    steering_batch: int = 256
    """Engine features per `generate` for steering (one image per row)."""
    hybrid_batch: int = 48
    """Engine features per `generate` for hybrid (five images per row: a longer KV cache)."""
    topk_batch: int = 256
    """Images per tower forward in the top-k activation pass."""


_TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                "image_size": 28, "patch_size": 7}
_TINY_TEXT = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2,
              "pad_token_id": 0}

SHAPES: dict[str, Shape] = {
    # CLIP ViT-L/14-336 (577 tokens, read at hidden state 23 of 24) + Llama-2-7B; SAE as in Pach et al.
    # Llama-2's KV cache has every head: 256 steering rows (or 48 hybrid rows of 5 images) ran out of an H200.
    "llava-1.5-7b": Shape(
        "llava",
        vision={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                "image_size": 336, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu"},
        text={"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "pad_token_id": 32001},
        top={"image_token_id": 32000}, sae_layer=22, new_tokens=64, steering_batch=96, hybrid_batch=16),
    # SigLIP so400m at 896 px (4,096 tokens, pooled to 256) + Gemma-3-27B's text model; the paper's layer 16.
    # RoPE settings are left at their defaults: they do not change the cost.
    "gemma-3-27b": Shape(
        "gemma3",
        vision={"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                "image_size": 896, "patch_size": 14, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
        text={"vocab_size": 262208, "hidden_size": 5376, "intermediate_size": 21504, "num_hidden_layers": 62,
              "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128, "query_pre_attn_scalar": 168,
              "sliding_window": 1024, "max_position_embeddings": 131072},
        top={"mm_tokens_per_image": 256}, sae_layer=16, new_tokens=50, steering_batch=128, hybrid_batch=32,
        topk_batch=64),
    # CPU-sized shapes of both families, for tests.
    "tiny": Shape("llava", _TINY_VISION, _TINY_TEXT, top={"image_token_id": 63}, sae_layer=1, new_tokens=6,
                  prompt_tokens=8, steering_batch=8, hybrid_batch=4, topk_batch=8),
    "tiny-gemma3": Shape("gemma3", _TINY_VISION, {**_TINY_TEXT, "head_dim": 8, "sliding_window": 16}, sae_layer=2,
                         top={"mm_tokens_per_image": 4, "image_token_index": 63, "boi_token_index": 61,
                              "eoi_token_index": 62}, new_tokens=6, prompt_tokens=8, steering_batch=8, hybrid_batch=4,
                         topk_batch=8),
}


def build_random_vlm(shape: Shape, device: str, dtype: torch.dtype) -> VLMAdapter:
    """The shape's model with random weights, built on the device (no CPU copy, no download)."""
    adapter = ADAPTERS.get(shape.family)
    config = adapter.build_config(shape.vision, shape.text, **shape.top)
    torch.manual_seed(0)
    with torch.device(device):
        model = adapter.model_class._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return adapter(model)


def synthetic_inputs(vlm: VLMAdapter, n_images: int, prompt_tokens: int, rows: int) -> dict[str, torch.Tensor]:
    """Encoded prompts as the processor would give them: half the text, each image's tokens, the
    other half; white pixel values (the empty image) for rows x n_images images."""
    g = torch.Generator().manual_seed(0)
    text = torch.randint(3, min(1000, vlm.model.config.text_config.vocab_size - 3), (prompt_tokens,), generator=g)
    image = torch.full((vlm.tokens_per_image,), vlm.model.config.image_token_id)
    ids = torch.cat([text[:prompt_tokens // 2], *[image] * n_images, text[prompt_tokens // 2:]])
    inputs = vlm.placeholder_inputs(ids.expand(rows, -1).to(vlm.device))
    inputs["pixel_values"] = _white_pixels(vlm, rows * n_images)
    return inputs


def run_shape_bench(shape: str, device: str = "cuda", random_weights: bool = True, path: str | None = None,
                    loop_features: int = 4, engine_batches: int = 2, topk_images: int | None = None,
                    static_cache: bool = False) -> dict:
    """One JSON-able report: steering and hybrid features/s (loop and engine) and their ratio, top-k
    pass images/s, peak memory (GiB, accelerators only). `path`: a real checkpoint of the shape's
    family instead of random weights. `static_cache`: also time the engine with a static KV cache
    (which transformers compiles on CUDA)."""
    if shape not in SHAPES:
        raise UsageError(f"unknown shape {shape!r}; available: {', '.join(SHAPES)}")
    if not random_weights and path is None:
        raise UsageError("without --random-weights the bench needs a checkpoint path")
    spec = SHAPES[shape]
    dtype = default_dtype(device)
    start = time.perf_counter()
    vlm = build_random_vlm(spec, device, dtype) if random_weights else load_vlm(spec.family, path, device, dtype)
    report = {"shape": shape, "family": spec.family, "device": str(vlm.device),
              "dtype": str(dtype).removeprefix("torch."), "random_weights": random_weights,
              "sae_layer": spec.sae_layer, "new_tokens": spec.new_tokens, "image_tokens": vlm.tokens_per_image, "tower_tokens": len(vlm.token_patches()),
              "build_s": round(time.perf_counter() - start, 2)}
    fixed = {"min_new_tokens": spec.new_tokens}
    engines = {"engine": SteeringEngine(vlm, spec.sae_layer, **fixed)}
    if static_cache:
        engines["engine_static"] = SteeringEngine(vlm, spec.sae_layer, cache_implementation="static", **fixed)
    d = vlm.model.config.vision_config.hidden_size
    g = torch.Generator().manual_seed(1)
    for name, n_images, batch in (("steering", 1, spec.steering_batch), ("hybrid", HYBRID_IMAGES, spec.hybrid_batch)):
        n = batch * engine_batches
        vectors = torch.randn(n, d, generator=g).to(vlm.device)
        positions = None if n_images == 1 else \
            (torch.rand(n, n_images, len(vlm.token_patches()), generator=g) < HYBRID_ACTIVE).to(vlm.device)
        one_row = synthetic_inputs(vlm, n_images, spec.prompt_tokens, 1)
        loop = lambda k, r=one_row, v=vectors, p=positions: _loop(  # noqa: E731
            vlm, spec, r, v[:k], None if p is None else p[:k])
        section = {"loop_features": loop_features, "engine_features": n, "batch_size": batch,
                   **_timed("loop", loop, loop_features, 1, vlm.device)}
        for key, engine in engines.items():
            engine.batch_size = batch
            # a static cache compiles per batch shape: warm it up on a full batch
            warmup = batch if key == "engine_static" else 1
            section.update(_timed(key, _engine_run(engine, spec, n_images, vectors, positions), n, warmup, vlm.device))
            section[f"{key}_ratio"] = round(section[f"{key}_per_s"] / section["loop_per_s"], 2)
        report[name] = section
    images = topk_images or 4 * spec.topk_batch
    pixels = _white_pixels(vlm, images)
    topk = lambda k: [None for _ in engines["engine"].tower_states(pixels[:k], spec.topk_batch)]  # noqa: E731
    report["topk"] = {"images": images, "batch_size": spec.topk_batch, **_timed("images", topk, images, 1, vlm.device)}
    report["ratios"] = {name: report[name]["engine_ratio"] for name in ("steering", "hybrid")}
    return report


def _white_pixels(vlm: VLMAdapter, n: int) -> torch.Tensor:
    """(n, 3, H, W) on the device: white after normalisation is about +1 (+2 for CLIP's statistics)."""
    size = vlm.model.config.vision_config.image_size
    side = size if isinstance(size, int) else size[0]
    return torch.ones(n, 3, side, side, device=vlm.device, dtype=vlm.dtype)


def _loop(vlm: VLMAdapter, spec: Shape, one_row: dict, vectors_BD: torch.Tensor,
          positions_BNT: torch.Tensor | None) -> None:
    """The one-feature-per-generate loop: the steering hook around the model's own `generate`."""
    for f in range(len(vectors_BD)):
        n_images = len(one_row["pixel_values"])
        positions = None if positions_BNT is None else positions_BNT[f]
        with steer(vlm.layer(spec.sae_layer), vectors_BD[f:f + 1].repeat_interleave(n_images, dim=0), positions), \
                torch.no_grad():
            vlm.model.generate(**one_row, max_new_tokens=spec.new_tokens, min_new_tokens=spec.new_tokens,
                               do_sample=False)


def _engine_run(engine: SteeringEngine, spec: Shape, n_images: int, vectors_BD: torch.Tensor,
                positions_BNT: torch.Tensor | None) -> Callable[[int], None]:
    """Steering: all rows share the white image. Hybrid: each batch is encoded rows of their own images."""
    if positions_BNT is None:
        one_row = synthetic_inputs(engine.vlm, 1, spec.prompt_tokens, 1)
        return lambda k: engine.generate_shared(one_row, vectors_BD[:k], None, spec.new_tokens)
    batch = synthetic_inputs(engine.vlm, n_images, spec.prompt_tokens, engine.batch_size)

    def run(k: int) -> None:
        for start in range(0, k, engine.batch_size):
            stop = min(k, start + engine.batch_size)
            rows = {key: value[:(stop - start) * (n_images if key == "pixel_values" else 1)]
                    for key, value in batch.items()}
            engine.generate_rows(rows, vectors_BD[start:stop], positions_BNT[start:stop], spec.new_tokens)
    return run


def _timed(key: str, run: Callable[[int], None], n: int, warmup: int, device: torch.device) -> dict:
    """`key`_per_s: items per second of run(n) after a warm-up run(warmup); `key`_s; `key`_peak_gib."""
    run(warmup)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(n)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {f"{key}_per_s": round(n / seconds, 3), f"{key}_s": round(seconds, 2)}
    if device.type == "cuda":
        out[f"{key}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return out
