"""How far a batch's prefill and decode are from the card's peaks: work counted from the model's
own modules, over the seconds `benchmark.steering.clock.StageClock` measured.

- Prefill work, in FLOP: 2 per weight of the decoder's linear layers per prompt token (what
  `torch.utils.flop_counter` counts as their matmuls; a test checks), causal attention (scores and
  their weighted sum: 2 x prompt^2 x query width per layer), and the LM head on the last position
  only (what `generate` computes).
- Decode traffic, in bytes: every decode step reads the linear layers' weights and the LM head
  once (norms are a rounding error), and each row's KV cache so far (prompt plus the tokens before
  this one). Sliding-window layers
  are counted in full: at the bench's prompt lengths (300 to 3,000 tokens) against a 1,024 window
  that overstates Gemma's hybrid traffic, never its steering traffic.
Peaks are the vendors' dense bf16 tensor-core FLOP/s and HBM bandwidth; a card not listed gets
none, and the report gives the rates alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.models.adapters.base import VLMAdapter


@dataclass(frozen=True)
class Peaks:
    flop_per_s: float
    bytes_per_s: float


CARDS: dict[str, Peaks] = {
    "H200": Peaks(989e12, 4.8e12),
    "H100 PCIe": Peaks(756e12, 2.0e12),
    "H100 NVL": Peaks(835e12, 3.9e12),
    "H100": Peaks(989e12, 3.35e12),  # SXM (HBM3), the name without a suffix
}
"""By a substring of `torch.cuda.get_device_name`, most specific first."""


def card_peaks(device: torch.device) -> tuple[str, Peaks | None]:
    """The device's name and its peaks (None: not a listed card)."""
    if device.type != "cuda":
        return device.type, None
    name = torch.cuda.get_device_name(device)
    return name, next((peaks for key, peaks in CARDS.items() if key in name), None)


@dataclass(frozen=True)
class LMCosts:
    """Per row: what the language model's prefill computes and what each decode step reads."""

    decoder_weights: int
    """Weights of the decoder's linear layers: the matmuls a token goes through."""
    head_weights: int
    layers: int
    query_width: int
    kv_bytes_per_token: int
    weight_bytes: int
    """Bytes one decode step reads of weights: the decoder and the LM head."""

    @classmethod
    def of(cls, vlm: VLMAdapter) -> LMCosts:
        text = vlm.model.config.get_text_config()
        lm, head = vlm.model.model.language_model, vlm.model.get_output_embeddings()
        decoder = sum(m.weight.numel() for m in lm.modules() if isinstance(m, nn.Linear))
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        itemsize = vlm.dtype.itemsize
        return cls(decoder, head.weight.numel(), text.num_hidden_layers, heads * head_dim,
                   2 * text.num_hidden_layers * kv_heads * head_dim * itemsize,
                   (decoder + head.weight.numel()) * itemsize)

    def prefill_flop(self, prompt_tokens: int, rows: int) -> float:
        per_row = 2 * self.decoder_weights * prompt_tokens + 2 * prompt_tokens ** 2 * self.query_width * self.layers \
            + 2 * self.head_weights
        return float(rows * per_row)

    def decode_bytes(self, prompt_tokens: int, steps: int, rows: int) -> float:
        """Bytes read by `steps` decode steps after the prefill (step t attends to prompt + t tokens)."""
        attended = steps * prompt_tokens + steps * (steps + 1) // 2
        return float(steps * self.weight_bytes + rows * self.kv_bytes_per_token * attended)


def breakdown(batches: list[dict], costs: LMCosts, prompt_tokens: int, peaks: Peaks | None) -> dict:
    """The clock's batches summed: seconds of tower, prefill and decode, each one's share, the
    prefill's TFLOP/s and the decode's GB/s (and their share of the card's peaks when known)."""
    seconds = {stage: sum(b[f"{stage}_s"] for b in batches) for stage in ("tower", "prefill", "decode")}
    total = sum(seconds.values())
    flop = sum(costs.prefill_flop(prompt_tokens, b["rows"]) for b in batches)
    traffic = sum(costs.decode_bytes(prompt_tokens, b["decode_steps"], b["rows"]) for b in batches)
    flop_per_s = flop / seconds["prefill"] if seconds["prefill"] else None
    bytes_per_s = traffic / seconds["decode"] if seconds["decode"] else None
    out: dict = {"batches": len(batches), "rows": [b["rows"] for b in batches], "prompt_tokens": prompt_tokens,
                 **{f"{stage}_s": round(s, 4) for stage, s in seconds.items()},
                 **{f"{stage}_share": round(s / total, 3) if total else None for stage, s in seconds.items()},
                 "prefill_tflop": round(flop / 1e12, 3), "decode_gb": round(traffic / 1e9, 3),
                 "prefill_tflop_per_s": _rounded(flop_per_s, 1e12), "decode_gb_per_s": _rounded(bytes_per_s, 1e9)}
    if peaks is not None:
        out["prefill_of_peak"] = _rounded(flop_per_s, peaks.flop_per_s)
        out["decode_of_peak"] = _rounded(bytes_per_s, peaks.bytes_per_s)
    return out


def _rounded(value: float | None, unit: float) -> float | None:
    """`value` in `unit`s, to 4 significant digits (None stays None)."""
    return None if value is None else float(f"{value / unit:.4g}")
