"""What the steering engine needs from a VLM family, behind one small interface.

A family differs in where its vision tower keeps its blocks, what the tower puts before the patch
tokens (a CLS token or nothing), which hidden state the projector reads and what happens between
that state and the language model (CLS dropped, pooling, pixel shuffle). Everything else (chat
template, image-token expansion, left padding, greedy generation) is the checkpoint's own processor
and `generate`. Tower hidden states are counted as transformers counts them: hidden state 0 is the
embedding output, hidden state L (L >= 1) is the output of block L - 1 (`tower_layers[L - 1]`),
the block a steering hook goes on.

The tower is split at hidden state L: `tower_prefix` runs the embeddings and the first L blocks,
`image_features` the remaining blocks up to the read state and the family's path to the language
model. Together they equal the model's own `get_image_features` (a test checks each family), so an
engine can compute the prefix once and reuse it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoProcessor, BatchFeature, PretrainedConfig, PreTrainedModel, ProcessorMixin
from transformers.modeling_outputs import BaseModelOutputWithPooling

ImageLike = Image.Image | np.ndarray
"""A PIL image or an (H, W, 3) uint8 array."""


CASTS = ("load", "whole")
"""How a loaded VLM takes its dtype: load (`from_pretrained(dtype=...)`, which keeps the buffers
transformers computes in float32, the rotary inverse frequencies among them, in float32) or whole
(then `model.to(dtype)`, every floating parameter and buffer cast: the seed paper's code, whose
bf16 language model therefore rotates positions with bf16 frequencies). The same in float32."""


def cast_whole(model: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """`model` with every floating parameter and buffer in `dtype` (`CASTS`: whole)."""
    return model.to(dtype)


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on an accelerator, fp32 on the CPU (bf16 matmuls there are slow and inexact)."""
    return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16


class VLMAdapter:
    """One loaded VLM (`model`, and `processor` when loaded from a checkpoint) seen the same way for
    every family. Subclasses set `model_class` and implement the tower hooks marked below."""

    model_class: ClassVar[type[PreTrainedModel]]
    prefix_tokens: ClassVar[int]
    """Tower tokens before the patch grid at every hidden state (1 for a CLS token, else 0)."""
    processor_kwargs: ClassVar[dict[str, Any]] = {}
    """Passed on every processor call (e.g. to turn off tiling, so one image is one tile)."""

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin | None = None):
        self.model = model.eval()
        self.processor = processor
        if processor is not None:
            processor.tokenizer.padding_side = "left"

    @classmethod
    def load(cls, path: str, device: str | torch.device, dtype: torch.dtype | None = None) -> VLMAdapter:
        """A checkpoint directory or hub id, with its processor; SDPA attention. The weights go
        straight to `device` (a single-device `device_map`, through accelerate), so a 27B model
        never needs a full copy in host memory."""
        model = cls.model_class.from_pretrained(path, dtype=dtype or default_dtype(device), attn_implementation="sdpa",
                                                device_map=torch.device(device))
        return cls(model, AutoProcessor.from_pretrained(path))

    @classmethod
    def build_config(cls, vision: dict, text: dict, **top: Any) -> PretrainedConfig:
        """The family's composite config from vision and text settings (random-weight shapes, tests)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def tower(self) -> nn.Module:
        return self.model.model.vision_tower

    @property
    def tower_layers(self) -> nn.ModuleList:
        raise NotImplementedError

    @property
    def read_state(self) -> int:
        """The tower hidden state the projector reads; steering after it changes nothing. Default: the
        config's `vision_feature_layer` (LLaVA, InternVL), negative counting from the last state."""
        read = self.model.config.vision_feature_layer
        if not isinstance(read, int):
            raise ValueError(f"vision_feature_layer {read} concatenates several states; one state is supported")
        return read if read >= 0 else len(self.tower_layers) + 1 + read

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of patches in the processed image."""
        vision = self.model.config.vision_config
        size, patch = _pair(vision.image_size), _pair(vision.patch_size)
        return size[0] // patch[0], size[1] // patch[1]

    @property
    def tokens_per_image(self) -> int:
        """Image tokens one image occupies in the language model's input. Default: the config's
        `image_seq_length`."""
        return self.model.config.image_seq_length

    def layer(self, hidden_state: int) -> nn.Module:
        """The block whose output is tower hidden state `hidden_state`: where a steering hook goes."""
        if not 1 <= hidden_state <= self.read_state:
            raise ValueError(f"tower hidden state {hidden_state} is outside 1..{self.read_state}, the states that "
                             f"reach the language model")
        return self.tower_layers[hidden_state - 1]

    def token_patches(self) -> torch.Tensor:
        """(T, 2): the (row, col) in the processed image's patch grid of each tower token at any
        hidden state; (-1, -1) for tokens that are no patch (CLS). All three families keep the
        patch embedding's row-major order through every block."""
        rows, cols = self.grid
        rc = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1).reshape(-1, 2)
        return torch.cat([torch.full((self.prefix_tokens, 2), -1), rc])

    @torch.no_grad()
    def tower_prefix(self, pixel_values_NCHW: torch.Tensor, hidden_state: int) -> torch.Tensor:
        """(N, T, D): tower hidden state `hidden_state` (the embeddings and the blocks before it)."""
        self.layer(hidden_state)  # validates the index
        hidden = self._embed(pixel_values_NCHW.to(self.device, self.dtype))
        for block in self.tower_layers[:hidden_state]:
            hidden = self._block(block, hidden)
        return hidden

    @torch.no_grad()
    def image_features(self, hidden_NTD: torch.Tensor, hidden_state: int) -> torch.Tensor:
        """What the language model receives for each image, from tower hidden state `hidden_state`:
        (N, tokens_per_image, D_lm), the model's own `get_image_features(...).pooler_output`."""
        for block in self.tower_layers[hidden_state:self.read_state]:
            hidden_NTD = self._block(block, hidden_NTD)
        return self._project(hidden_NTD)

    def encoder_output(self, features_NPD: torch.Tensor) -> BaseModelOutputWithPooling:
        """Image features as `generate(mm_encoder_outputs={"image": ...})` takes them: the route
        transformers itself takes after encoding pixels, so the language model's path is unchanged."""
        return BaseModelOutputWithPooling(pooler_output=features_NPD)

    def pixel_values(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(N, C, H, W) processed images on the model's device, in its dtype (no text)."""
        pixels = self.processor.image_processor([_as_pil(image) for image in images], return_tensors="pt",
                                                **self._processing_kwargs())["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def _processing_kwargs(self) -> dict[str, Any]:
        """Every processor call's settings; on an accelerator the image processor (transformers'
        torchvision backend) resizes and normalises there: only uint8 pixels cross the bus, and the
        host's cores are left to decoding."""
        on_device = {} if self.device.type == "cpu" else {"device": self.device}
        return {**self.processor_kwargs, **on_device}

    def _embed(self, pixel_values_NCHW: torch.Tensor) -> torch.Tensor:
        """Family hook: pixels to hidden state 0."""
        raise NotImplementedError

    def _block(self, block: nn.Module, hidden_NTD: torch.Tensor) -> torch.Tensor:
        """Family hook: one tower block (CLIP and SigLIP blocks take an attention mask; none here)."""
        return block(hidden_NTD, None)

    def _project(self, hidden_NTD: torch.Tensor) -> torch.Tensor:
        """Family hook: the read state to language-model image tokens."""
        raise NotImplementedError

    def placeholder_image_ids(self) -> torch.Tensor:
        """(S,) the ids one image occupies in a prompt, as the processor expands it: for random-weight
        benchmarks, which have no processor. Default: `tokens_per_image` image tokens (InternVL's
        processor adds `<img>` and `</img>` around them, ids its config does not hold: no bench shape
        is InternVL's)."""
        return torch.full((self.tokens_per_image,), self.model.config.image_token_id)

    def placeholder_inputs(self, input_ids_BS: torch.Tensor) -> dict[str, torch.Tensor]:
        """The text inputs the processor would give for these already-expanded ids (no padding):
        for random-weight benchmarks, which have no tokenizer."""
        return {"input_ids": input_ids_BS, "attention_mask": torch.ones_like(input_ids_BS)}

    def prompt_text(self, n_images: int, prompt: str, answer_prefix: str = "") -> str:
        """One user turn through the checkpoint's chat template: `n_images` images, then `prompt`,
        then the generation prompt and `answer_prefix`, the words every answer is forced to begin
        with (the paper's protocol). Only new tokens are decoded, so the prefix never reaches an answer."""
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)
        if not answer_prefix:
            return text
        return text + answer_prefix if text[-1:].isspace() else f"{text} {answer_prefix}"

    def encode(self, images: Sequence[Sequence[ImageLike]], prompt: str, answer_prefix: str = "") -> BatchFeature:
        """Model inputs for rows of images (rows may hold different numbers), left padded, on the
        model's device; pixel values in the model's dtype, all images of all rows in row order."""
        rows = [[_as_pil(image) for image in row] for row in images]
        texts = [self.prompt_text(len(row), prompt, answer_prefix) for row in rows]
        enc = self.processor(images=rows, text=texts, padding=True, return_tensors="pt", **self._processing_kwargs())
        enc = enc.to(self.device)
        enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
        return enc

    def decode(self, new_ids_BS: torch.Tensor) -> list[str]:
        return [text.strip() for text in self.processor.batch_decode(new_ids_BS, skip_special_tokens=True)]

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """What the family needs around the steering engine's `generate` calls: nothing by default
        (Gemma 3: decoding steps without image-token types)."""
        yield

    @torch.no_grad()
    def generate(self, images: Sequence[Sequence[ImageLike]], prompt: str, max_new_tokens: int,
                 answer_prefix: str = "", **generate_kwargs: Any) -> list[str]:
        """Greedy answers, one per row of images; only the new tokens are decoded."""
        enc = self.encode(images, prompt, answer_prefix)
        out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, **generate_kwargs)
        return self.decode(out[:, enc["input_ids"].shape[1]:])


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _as_pil(image: ImageLike) -> Image.Image:
    """PIL, because array inputs make processors guess the channel axis (a 3-px-wide image is ambiguous)."""
    return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
