"""The work a batch's stages are set against: prefill FLOP equal to torch's own FLOP counter on the
language model's matmuls, decode bytes by hand on a tiny shape, rates and shares of known seconds."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.bench.roofline import LMCosts, Peaks, breakdown, card_peaks
from benchmark.bench.shapes import SHAPES, build_random_vlm

PROMPT, ROWS = 10, 3


@pytest.fixture(scope="module", params=["tiny", "tiny-gemma3"])
def vlm(request):
    return build_random_vlm(SHAPES[request.param], "cpu", torch.float32)


def test_prefill_matmul_flop_are_what_torch_counts(vlm):
    """torch.utils.flop_counter on the model's forward over the prompt, logits of the last position
    only (as `generate` asks): the linear layers' and LM head's FLOP, to the unit. Attention is the
    formula's own term (the CPU's fused attention kernel is not counted by torch)."""
    costs = LMCosts.of(vlm)
    with FlopCounterMode(display=False) as counter:
        vlm.model(input_ids=torch.randint(3, 50, (ROWS, PROMPT)), logits_to_keep=1)
    attention = ROWS * 2 * PROMPT ** 2 * costs.query_width * costs.layers
    assert costs.prefill_flop(PROMPT, ROWS) - attention == counter.get_total_flops()


def test_decode_bytes_by_hand():
    """Tiny LLaVA text model: 2 layers of q, k, v, o (32x32, 32x16, 32x16, 32x32) and a gated MLP
    (3 x 32x64): 9,216 weights a layer; the LM head 64 x 32; float32. Keys and values: 2 layers x 2 x
    2 KV heads x 8 wide x 4 bytes = 256 bytes a token. Four decode steps after a 10-token prompt
    attend to 11, 12, 13 and 14 tokens."""
    costs = LMCosts.of(build_random_vlm(SHAPES["tiny"], "cpu", torch.float32))
    assert (costs.decoder_weights, costs.head_weights, costs.kv_bytes_per_token) == (2 * 9216, 2048, 256)
    assert costs.decode_bytes(PROMPT, 4, ROWS) == 4 * (2 * 9216 + 2048) * 4 + ROWS * 256 * (11 + 12 + 13 + 14)


def test_breakdown_rates_and_shares_of_known_seconds():
    costs = LMCosts(decoder_weights=1000, head_weights=100, layers=2, query_width=8, kv_bytes_per_token=16,
                    weight_bytes=2200)
    batch = {"rows": 4, "tower_s": 0.5, "prefill_s": 1.0, "decode_s": 2.5, "decode_steps": 5}
    out = breakdown([batch, batch], costs, PROMPT, Peaks(flop_per_s=1e6, bytes_per_s=1e5))
    flop = 2 * costs.prefill_flop(PROMPT, 4)
    traffic = 2 * costs.decode_bytes(PROMPT, 5, 4)
    assert (out["tower_s"], out["prefill_s"], out["decode_s"]) == (1.0, 2.0, 5.0)
    assert (out["tower_share"], out["prefill_share"], out["decode_share"]) == (0.125, 0.25, 0.625)
    assert out["prefill_tflop_per_s"] == float(f"{flop / 2.0 / 1e12:.4g}")
    assert out["decode_gb_per_s"] == float(f"{traffic / 5.0 / 1e9:.4g}")
    assert out["prefill_of_peak"] == float(f"{flop / 2.0 / 1e6:.4g}")
    assert out["decode_of_peak"] == float(f"{traffic / 5.0 / 1e5:.4g}")
    assert out["rows"] == [4, 4] and out["batches"] == 2


def test_no_peaks_off_a_listed_card():
    assert card_peaks(torch.device("cpu")) == ("cpu", None)
    assert "prefill_of_peak" not in breakdown([], LMCosts(1, 1, 1, 1, 1, 1), PROMPT, None)
