"""The numeric contract: on a CPU, what a user's machine computes is what the project measured.

Two x86-64 CPUs run different BLAS and vector kernels (MKL's Intel AVX-512 path, its AMD path,
oneDNN's ISA levels, ATen's vector width), so float32 sums come out a few ulps apart: measured
3.8e-6 on the world's tower states and 2.1e-7 on scorer embeddings between two CPUs. Most numbers
absorb that, but discrete choices do not: a TopK SAE whose k-th and (k+1)-th pre-activations are
7 ulps apart fires on one machine and not the other, which flips an image's label and moves a
metric by sampling noise. So, on a CPU, every measurement runs in float64:

- the activation pass (the tower up to the SAE's hidden state, and the SAE's encoding), so TopK
  sets are decided on values that agree to ~1e-16 instead of ~1e-6;
- the scorer CLIP (image, patch and text embeddings) and every similarity computed from them;
- every statistic a metric reduces or calibrates (`metrics.functional` works in float64).

What is stored stays float32 (codes, embeddings): a float64 value rounds to the same float32 on
every machine unless it lies within ~1e-16 of a rounding boundary. Answering (the language model's
greedy `generate`) keeps the VLM's own dtype: its choices are words, and where a choice rests on a
near-tie the row says so.

On an accelerator the model's dtype is kept (bf16 kernels differ between cards anyway), and so it is
where a run asks for a half precision on purpose; the rows then count their near-ties at that
dtype's tolerance (`near_tie_tolerance`).

The cost, measured on 2 cores: `README.md`, "Numbers on any machine".
"""
from __future__ import annotations

import torch

CPU_MEASURE_DTYPE = torch.float64
"""The dtype of every measurement on a CPU (see the module docstring)."""

NEAR_TIE_RELATIVE = {torch.float64: 1e-9, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}
"""A discrete choice whose margin is below this share of the compared values' magnitude (at least 1)
may go the other way on another machine: float64 drifts ~1e-16 between CPUs, float32 ~1e-6 (the
tower states' 3.8e-6), half precisions a few of their ulps (bf16: 2**-8)."""


def measure_dtype(device: str | torch.device, model_dtype: torch.dtype) -> torch.dtype:
    """The dtype measurements run in: float64 for a float32 model on a CPU (the contract), the
    model's own elsewhere: on an accelerator, or where a run asks for a half precision on purpose
    (`[vlm] dtype`, e.g. to reproduce the seed paper's bf16 arithmetic)."""
    return CPU_MEASURE_DTYPE if torch.device(device).type == "cpu" and model_dtype == torch.float32 else model_dtype


def near_tie_tolerance(dtype: torch.dtype) -> float:
    """The relative margin below which a choice computed in `dtype` counts as a near-tie."""
    return NEAR_TIE_RELATIVE.get(dtype, NEAR_TIE_RELATIVE[torch.float32])


def describe(device: str | torch.device, model_dtype: torch.dtype) -> dict:
    """What `run.json` records of the contract a source measured under."""
    dtype = measure_dtype(device, model_dtype)
    return {"measure_dtype": str(dtype).removeprefix("torch."), "answer_dtype": str(model_dtype).removeprefix("torch."),
            "statistics_dtype": "float64", "near_tie_relative": near_tie_tolerance(dtype),
            "answer_near_tie_relative": near_tie_tolerance(model_dtype)}
