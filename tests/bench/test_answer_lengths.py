"""`EndAtDrawnLengths`: random-weight answers that end at chosen lengths, followed through the
engine's rounds (rows that ended leave the batch) and through one static-cache `generate` alike."""
from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from benchmark.bench.answer_lengths import EndAtDrawnLengths, answer_lengths
from benchmark.bench.shapes import SHAPES, build_random_vlm, synthetic_inputs
from benchmark.steering.engine import SteeringEngine

LENGTHS = [1, 2, 4, 5, 9, 17, 30, 3]
"""Rows end in the first round (1, 2, 3, 4), the second (5), the third (9) and later (17, 30)."""
MAX_NEW = 30


@pytest.mark.parametrize("shape", ["tiny", "tiny-gemma3"])
def test_rows_end_at_their_lengths_and_leave_the_batch_between_rounds(shape):
    spec = SHAPES[shape]
    vlm = build_random_vlm(spec, "cpu", torch.float32)
    one_row = synthetic_inputs(vlm, 1, spec.prompt_tokens, 1)
    config = vlm.model.generation_config
    end_tokens = [config.eos_token_id, config.pad_token_id]
    vectors_BD = torch.randn(len(LENGTHS), vlm.model.config.vision_config.hidden_size,
                             generator=torch.Generator().manual_seed(0))
    answers, rows_by_step = {}, {}
    for static in (False, True):
        ender = EndAtDrawnLengths(one_row["input_ids"].shape[1], torch.tensor(LENGTHS), end_tokens)
        seen = rows_by_step.setdefault(static, {})

        def watched(input_ids, scores, ender=ender, seen=seen):
            seen.setdefault(input_ids.shape[1] - ender.prompt, len(input_ids))
            return ender(input_ids, scores)

        engine = SteeringEngine(vlm, spec.sae_layer, len(LENGTHS), static_cache=static,
                                logits_processor=LogitsProcessorList([watched]))
        answers[static] = engine.generate_shared(one_row, vectors_BD, None, MAX_NEW)
        assert answer_lengths(answers[static], set(end_tokens)) == LENGTHS
    # rounds of 4, 4, 8 and 14 new tokens: each starts with the rows whose length is still ahead
    assert {made: rows_by_step[False][made] for made in (0, 4, 8, 16)} == {0: 8, 4: 4, 8: 3, 16: 2}
    assert set(rows_by_step[True].values()) == {8}  # one generate of fixed shape
    for dynamic_S, static_S, length in zip(answers[False], answers[True], LENGTHS):
        assert torch.equal(dynamic_S[:length], static_S[:length])  # fp32, greedy: the same answers


def test_a_batch_that_lost_rows_it_did_not_end_is_an_error():
    ender = EndAtDrawnLengths(2, torch.tensor([3, 3, 3]), [0])
    ender(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 5))
    with pytest.raises(RuntimeError, match="2 rows go on after 1 tokens; 3 have not reached their length"):
        ender(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 5))


def test_the_end_is_forced_at_the_length_and_suppressed_before_it():
    ender = EndAtDrawnLengths(1, torch.tensor([1, 2, 3]), [4, 0])
    scores = ender(torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 5))
    assert scores[0].tolist() == [-torch.inf] * 4 + [0.0]  # row 0 ends now, with the first end token
    assert scores[1].tolist() == scores[2].tolist() == [-torch.inf, 0.0, 0.0, 0.0, -torch.inf]  # not yet


def test_uniform_lengths_are_seeded_and_in_range():
    a = EndAtDrawnLengths.uniform(5, 100, 4096, [2], seed=3).lengths_B
    assert torch.equal(a, EndAtDrawnLengths.uniform(5, 100, 4096, [2], seed=3).lengths_B)
    assert a.min() == 1 and a.max() == 100 and abs(a.float().mean() - 50.5) < 2
