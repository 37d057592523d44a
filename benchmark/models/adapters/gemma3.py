"""Gemma 3 (`Gemma3ForConditionalGeneration`): a SigLIP vision tower without a CLS token.

At 896 px the tower has 64 x 64 patch tokens (14 px patches), all of them hidden states the SAE
sees; the projector reads the last state after SigLIP's post-layernorm, average-pools 4 x 4 patch
blocks to 256 soft tokens, normalises and projects them. Each image in the prompt is
`<start_of_image>` + 256 image tokens + `<end_of_image>`, and the processor's `token_type_ids` mark
the image tokens, which attend to each other bidirectionally in the language model.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

from benchmark.models.adapters.base import VLMAdapter


class Gemma3Adapter(VLMAdapter):
    model_class = Gemma3ForConditionalGeneration
    prefix_tokens = 0

    @classmethod
    def build_config(cls, vision: dict, text: dict, **top: Any) -> Gemma3Config:
        return Gemma3Config(vision_config=SiglipVisionConfig(vision_use_head=False, **vision),
                            text_config=Gemma3TextConfig(**text), **top)

    @property
    def tower_layers(self) -> nn.ModuleList:
        return self.tower.encoder.layers

    @property
    def read_state(self) -> int:
        return len(self.tower_layers)

    @property
    def tokens_per_image(self) -> int:
        return self.model.config.mm_tokens_per_image

    def _embed(self, pixel_values_NCHW: torch.Tensor) -> torch.Tensor:
        return self.tower.embeddings(pixel_values_NCHW)

    def _project(self, hidden_NTD: torch.Tensor) -> torch.Tensor:
        return self.model.model.multi_modal_projector(self.tower.post_layernorm(hidden_NTD))

    def placeholder_image_ids(self) -> torch.Tensor:
        config = self.model.config
        return torch.cat([torch.tensor([config.boi_token_index]), super().placeholder_image_ids(),
                          torch.tensor([config.eoi_token_index])])

    def placeholder_inputs(self, input_ids_BS: torch.Tensor) -> dict[str, torch.Tensor]:
        token_type_ids = (input_ids_BS == self.model.config.image_token_id).long()
        return {**super().placeholder_inputs(input_ids_BS), "token_type_ids": token_type_ids}

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """`generate` whose one-token decoding steps carry no `token_type_ids`. They mark the image
        tokens for the bidirectional image-block mask; a step's one new token is text, so that mask
        cannot change its row, and Gemma 3 itself drops them from its forward after the prefill. But
        with a compileable (static) KV cache transformers builds each step's masks before the forward,
        from them, through vmapped mask functions: on the CPU, 8 rows x 100 tokens of the tiny shape
        took 1.67 s with them and 0.20 s without (the same tokens; the dynamic cache: 0.20 s)."""
        model = self.model
        prepare = model.prepare_inputs_for_generation

        @functools.wraps(prepare)  # transformers reads its signature
        def one_token_steps_untyped(input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> dict:
            if kwargs.get("next_sequence_length") == 1 and not kwargs.get("is_first_iteration"):
                kwargs.pop("token_type_ids", None)
            return prepare(input_ids, *args, **kwargs)

        model.prepare_inputs_for_generation = one_token_steps_untyped
        try:
            yield
        finally:
            del model.prepare_inputs_for_generation
