"""InternVL3 (`InternVLForConditionalGeneration`): an InternViT tower with a CLS token.

Chosen over Qwen2.5-VL as the third family because it is the seed paper's second model
(InternVL3-14B), and because its tower keeps the patch embedding's row-major order through every
block, so a tower token is one patch at every hidden state. Qwen2.5-VL's tower regroups tokens into
2 x 2 merge units and into attention windows (a `window_index` permutation, undone only after the
last block) and resizes every image to its own grid, so its token -> patch map would depend on the
layer and on each image's size.

At 448 px the tower has CLS + 32 x 32 patch tokens (14 px patches); the projector reads the last
state (after the tower's final norm, an identity when it mean-pools), drops CLS, pixel-shuffles
2 x 2 patch blocks into one token (256 per image) and projects. The processor would tile large
images into several 448-px crops plus a thumbnail; tiling is turned off here so that one image is
one tile and the map above holds.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig

from benchmark.models.adapters.base import VLMAdapter


class InternVLAdapter(VLMAdapter):
    model_class = InternVLForConditionalGeneration
    prefix_tokens = 1
    processor_kwargs = {"crop_to_patches": False}

    @classmethod
    def build_config(cls, vision: dict, text: dict, **top: Any) -> InternVLConfig:
        vision_config = InternVLVisionConfig(**vision)
        downsample = top.pop("downsample_ratio", 0.5)
        side = vision_config.image_size[0] // vision_config.patch_size[0]
        return InternVLConfig(vision_config=vision_config, text_config=AutoConfig.for_model("qwen2", **text),
                              downsample_ratio=downsample, image_seq_length=int(side * downsample) ** 2, **top)

    @property
    def tower_layers(self) -> nn.ModuleList:
        return self.tower.encoder.layer

    def _embed(self, pixel_values_NCHW: torch.Tensor) -> torch.Tensor:
        return self.tower.embeddings(pixel_values_NCHW)

    def _block(self, block: nn.Module, hidden_NTD: torch.Tensor) -> torch.Tensor:
        return block(hidden_NTD)

    def _project(self, hidden_NTD: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        if config.vision_feature_layer == -1:
            hidden_NTD = self.tower.layernorm(hidden_NTD)
        if config.vision_feature_select_strategy == "default":
            hidden_NTD = hidden_NTD[:, 1:]
        n, t, d = hidden_NTD.shape
        side = int(t ** 0.5)
        shuffled = self.model.model.pixel_shuffle(hidden_NTD.reshape(n, side, side, d),
                                                  scale_factor=config.downsample_ratio)
        return self.model.model.multi_modal_projector(shuffled.reshape(n, -1, shuffled.shape[-1]))
