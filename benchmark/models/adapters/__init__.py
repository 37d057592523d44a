"""VLM adapters by family, in the `ADAPTERS` registry, and `load_vlm`, the one way to load a real VLM.

    vlm = load_vlm("llava", "llava-hf/llava-1.5-7b-hf", "cuda")      # or a local checkpoint directory
    layer = vlm.layer(22)                                           # block whose output is hidden state 22
    vlm.generate([[image]], "Describe the image.", max_new_tokens=64)

Families: `llava` (LLaVA-1.5), `gemma3` (Gemma 3), `internvl` (InternVL3). A plug-in family is a
`VLMAdapter` subclass under the entry-point group `featurebench.adapters`.
"""
from __future__ import annotations

import torch

from benchmark.models.adapters.base import CASTS, VLMAdapter, cast_whole, default_dtype
from benchmark.registry import Registry, UsageError, class_contract

ADAPTERS: Registry[type[VLMAdapter]] = Registry("VLM family", entry_point_group="featurebench.adapters",
                                                contract=class_contract("a VLMAdapter subclass", base=VLMAdapter))
"""VLM families: `VLMAdapter` subclasses."""
ADAPTERS.register_lazy("llava", "benchmark.models.adapters.llava:LlavaAdapter")
ADAPTERS.register_lazy("gemma3", "benchmark.models.adapters.gemma3:Gemma3Adapter")
ADAPTERS.register_lazy("internvl", "benchmark.models.adapters.internvl:InternVLAdapter")


def load_vlm(family: str, path: str, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None, cast: str = "load") -> VLMAdapter:
    """The checkpoint at `path` (directory or hub id) with its processor, through the family's
    adapter; dtype None: bf16 on an accelerator, fp32 on the CPU. `cast` (`CASTS`): whole casts the
    loaded model again, buffers included, after the family's own `load` (plug-ins' too)."""
    if cast not in CASTS:
        raise ValueError(f"cast {cast!r}; choose {', '.join(CASTS)}")
    adapter = ADAPTERS.get(family)
    try:
        vlm = adapter.load(path, device, dtype)
    except OSError as e:
        raise UsageError(f"cannot load a {family} checkpoint from {path}: {str(e).splitlines()[0]}") from e
    if cast == "whole":
        cast_whole(vlm.model, dtype or default_dtype(device))
    return vlm
