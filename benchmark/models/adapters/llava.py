"""LLaVA-1.5 (`LlavaForConditionalGeneration`): a CLIP vision tower with a CLS token.

The projector reads hidden state `vision_feature_layer` (-2 for LLaVA-1.5: the output of the
next-to-last block, without CLIP's post-layernorm) and, with the default select strategy, drops
the CLS token; the 24 x 24 patch tokens become the 576 image tokens in the same order. A forward
hook on the read block itself is the trap the steering engine's `prepend=True` avoids.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling

from benchmark.models.adapters.base import VLMAdapter


class LlavaAdapter(VLMAdapter):
    model_class = LlavaForConditionalGeneration
    prefix_tokens = 1

    @classmethod
    def build_config(cls, vision: dict, text: dict, **top: Any) -> LlavaConfig:
        vision_config = CLIPVisionConfig(**vision)
        patches = (vision_config.image_size // vision_config.patch_size) ** 2
        return LlavaConfig(vision_config=vision_config, text_config=LlamaConfig(**text), image_seq_length=patches,
                           vision_feature_layer=-2, vision_feature_select_strategy="default", **top)

    @property
    def tower_layers(self) -> nn.ModuleList:
        return self.tower.encoder.layers

    def encoder_output(self, features_NPD: torch.Tensor) -> BaseModelOutputWithPooling:
        return BaseModelOutputWithPooling(pooler_output=list(features_NPD))  # LlavaModel concatenates a list

    def _embed(self, pixel_values_NCHW: torch.Tensor) -> torch.Tensor:
        return self.tower.pre_layrnorm(self.tower.embeddings(pixel_values_NCHW))

    def _project(self, hidden_NTD: torch.Tensor) -> torch.Tensor:
        if self.model.config.vision_feature_select_strategy == "default":
            hidden_NTD = hidden_NTD[:, 1:]
        return self.model.model.multi_modal_projector(hidden_NTD)
