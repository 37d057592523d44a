"""Answers of varied length from random weights, which never choose to end one.

A bench that forces every answer to the same length (`min_new_tokens`) compares equal work, but it
hides what real answers do: end at different steps. There a dynamic KV cache decoding in rounds
drops the rows that ended (`SteeringEngine._decode_in_rounds`), while a static cache keeps its fixed
batch shape to the longest answer. `EndAtDrawnLengths` makes row i of each batch end after
`lengths[i]` new tokens, drawn once from a seeded generator, so both engines do exactly the same
work and the comparison shows what each cache costs when answers vary.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor


class EndAtDrawnLengths(LogitsProcessor):
    """Ends the i-th row of each `generate` batch after `lengths_B[i]` new tokens: the first of
    `end_tokens` (the end of sequence) is forced at that step, and all of them (the padding too,
    which the engine's rounds also read as an end) are suppressed before it. Rows are followed
    through a dynamic cache's rounds: a call that continues a batch with fewer rows has lost exactly
    the rows this processor ended, in order, so the rows left are known without reading a token."""

    def __init__(self, prompt_tokens: int, lengths_B: torch.Tensor, end_tokens: list[int]):
        """`prompt_tokens`: every row's prompt length (one prompt shape per bench workload);
        `lengths_B`: new tokens of batch row i, each at least 1."""
        if lengths_B.min() < 1:
            raise ValueError("every answer needs at least one token: its end")
        self.prompt, self.lengths_B, self.end_tokens = prompt_tokens, lengths_B, list(end_tokens)
        self.rows_b: torch.Tensor | None = None
        """Which rows of `lengths_B` the current call's rows are."""

    @classmethod
    def uniform(cls, prompt_tokens: int, max_new_tokens: int, rows: int, end_tokens: list[int],
                seed: int = 0) -> EndAtDrawnLengths:
        """Lengths drawn uniformly from 1..max_new_tokens: half the row-steps of a fixed-length
        batch are after their row's end (the world's steering answers had 69%)."""
        lengths_B = torch.randint(1, max_new_tokens + 1, (rows,), generator=torch.Generator().manual_seed(seed))
        return cls(prompt_tokens, lengths_B, end_tokens)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        made = input_ids.shape[1] - self.prompt  # new tokens so far
        if made == 0:  # a new batch: its rows are 0..B-1
            self.rows_b = torch.arange(len(input_ids))
        elif len(input_ids) < len(self.rows_b):  # a later round: the rows that ended have left
            self.rows_b = self.rows_b[self.lengths_B[self.rows_b] > made]
            if len(self.rows_b) != len(input_ids):
                raise RuntimeError(f"{len(input_ids)} rows go on after {made} tokens; "
                                   f"{len(self.rows_b)} have not reached their length")
        length_b = self.lengths_B[self.rows_b].to(scores.device)
        ending_b, going_b = length_b == made + 1, length_b > made + 1
        forced = torch.full_like(scores[0], -torch.inf)
        forced[self.end_tokens[0]] = 0.0
        shaped = torch.where(ending_b[:, None], forced, scores)  # masks, not indices: no wait for the device
        shaped[:, self.end_tokens] = torch.where(going_b[:, None], -torch.inf, shaped[:, self.end_tokens])
        return shaped


def answer_lengths(answers: list[torch.Tensor], end_tokens: set[int]) -> list[int]:
    """New tokens of each answer up to and including its first end token (all when none)."""
    lengths = []
    for ids in answers:
        ends = [i for i, token in enumerate(ids.tolist()) if token in end_tokens]
        lengths.append(ends[0] + 1 if ends else len(ids))
    return lengths
