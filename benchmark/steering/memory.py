"""Rows per `generate` from the device's free memory and the model's shape, not from a number tuned
for one card: the same run fits an 80 GB H100 and a 141 GB H200.

A row (one feature) holds, while its `generate` runs:
- its KV cache: 2 (keys, values) x LM layers x KV heads x head width per token, for the prompt and
  every new token (sliding-window layers counted in full: an upper bound);
- the prefill's widest transient: one decoder layer's activations over the prompt (the residual
  stream, its norm and attention output, the gated MLP's three intermediate tensors) and the
  attention mask (prompt x prompt: Gemma 3's bidirectional image blocks make it a tensor);
- its images in the tower: one block's activations (residual, norm, attention, the MLP's hidden
  layer twice) and two copies of the steered hidden state (the cached prefix and the steered one);
- the logits of the last position in float32, with the processed scores and argmax beside them.
Weights are already resident, so what is free is measured after loading. The plan keeps `SAFETY`
of it less `RESERVE_BYTES` (allocator fragmentation, cuBLAS workspaces, CUDA graph pools): an
estimate that errs high, checked against the bench's measured peak (`planned_peak_gib` beside
`peak_gib` in `bench --shape`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import PretrainedConfig

from benchmark.registry import UsageError

SAFETY = 0.85
"""Share of free device memory a batch may plan to use."""
RESERVE_BYTES = 2 * 2 ** 30
"""Headroom kept whatever the card: fragmentation, library workspaces, compiled graphs' pools."""


@dataclass(frozen=True)
class RowBytes:
    """Device bytes one row needs during its `generate`, by what holds them."""

    kv_cache: int
    prefill: int
    tower: int
    logits: int

    @property
    def total(self) -> int:
        return self.kv_cache + self.prefill + self.tower + self.logits

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def row_bytes(config: PretrainedConfig, prompt_tokens: int, new_tokens: int, n_images: int,
              tower_tokens: int, dtype_bytes: int = 2) -> RowBytes:
    """What one row of `prompt_tokens` (image tokens included) and `new_tokens` costs on `config`'s
    model, its `n_images` images of `tower_tokens` each, in a dtype of `dtype_bytes`."""
    text, vision = config.get_text_config(), config.vision_config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv = 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes * (prompt_tokens + new_tokens)
    prefill = prompt_tokens * (4 * text.hidden_size + 3 * text.intermediate_size) * dtype_bytes \
        + prompt_tokens ** 2 * dtype_bytes
    per_image = tower_tokens * (4 * vision.hidden_size + 2 * vision.intermediate_size + 2 * vision.hidden_size)
    logits = 3 * text.vocab_size * 4
    return RowBytes(kv, prefill, n_images * per_image * dtype_bytes, logits)


def rows_that_fit(per_row: RowBytes, free_bytes: int, cap: int) -> int:
    """Rows a `generate` may take: as many as `SAFETY` of `free_bytes` less `RESERVE_BYTES` holds, at
    most `cap` (the configured batch size). Refuses when not even one row fits."""
    usable = int(free_bytes * SAFETY) - RESERVE_BYTES
    if usable < per_row.total:
        raise UsageError(f"one row needs {per_row.total / 2**30:.2f} GiB but the device has "
                         f"{free_bytes / 2**30:.2f} GiB free ({usable / 2**30:.2f} GiB usable)")
    return min(cap, usable // per_row.total)


@dataclass(frozen=True)
class DeviceMemory:
    free: int
    """Bytes a new allocation could use: free on the card plus what PyTorch's allocator holds unused."""
    allocated: int
    """Bytes PyTorch's tensors hold now (the weights among them)."""


def device_memory(device: torch.device) -> DeviceMemory | None:
    """A CUDA device's memory as a plan reads it; None elsewhere (host memory is not planned this way)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    return DeviceMemory(free + torch.cuda.memory_reserved(device) - allocated, allocated)
