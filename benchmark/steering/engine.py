"""The steering engine at scale: many features per `generate`, the tower split at the SAE layer.

Steering adds a vector to tower hidden state L; everything before L depends on the image alone.
- **Shared images** (steering and its controls: every row shows the one empty image).
  `generate_shared` runs the embeddings and blocks 1..L once per call, then per feature batch only
  the blocks after L, on the cached state plus each row's vector. For LLaVA-1.5 at L = 22 that skips
  22 of the 23 blocks the projector needs; for Gemma 3 at L = 16, 16 of 27 SigLIP blocks over
  4,096 tokens per row. The prompt is encoded once and its ids expanded over the rows (same text,
  same image count: no padding).
- **Per-row images** (hybrid: each feature's own masked top images). `generate_rows` runs the
  prefix per image (nothing to share), adds each row's vector at its positions and finishes the
  tower: the hook's arithmetic without the hook.
- The language model gets the image features through `generate(mm_encoder_outputs=...)`, the
  route transformers takes itself after encoding pixels, so prefill, masks (Gemma 3's bidirectional
  image blocks) and decoding are the plain path's own. Greedy answers equal the hook + `generate`
  path (a test checks every family in fp32).
- The top-k activation pass, `tower_states`, runs the tower only up to L: no later blocks, no LM.

Not done, on purpose:
- Sharing the KV cache of the text before the image. That prefix is 1 to 5 tokens (`USER: `,
  `<bos><start_of_turn>user\\n`) of a 280 to 600 token prefill, under 2% of it; what follows the
  image depends on the image tokens, so it differs per row.
- A static cache with torch.compile by default. Compiling (CUDA graphs) removes the per-step
  Python and kernel-launch cost of decoding, which dominates the batch-1 loop. At the engine's batch
  sizes a decoding step's own GPU time already covers those launches (LLaVA-7B at B = 256 reads
  14 GB of weights and ~80 GB of KV cache per step, ~20 ms), and decoding is the smaller part of the
  work: by FLOP and byte counts about 5 of 19 ms per row for LLaVA-7B, the rest a compute-bound
  prefill of ~600 tokens. Compiling also costs minutes per batch shape (the last, partial batch
  compiles again). So it is opt-in: `cache_implementation="static"` in `generate_kwargs`, which
  transformers compiles on CUDA; `run_shape_bench(..., static_cache=True)` times it beside the default.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from benchmark.models.adapters.base import ImageLike, VLMAdapter
from benchmark.steering.interventions import Intervention

ROW_PIXELS = 2 ** 25
"""Image pixels per `generate` of per-row images at most (their pixel values are 384 MB of float32):
hybrid's five 896-px images a row allow 8 rows; the world's 32-px ones never cut a batch."""


class SteeringEngine:
    def __init__(self, vlm: VLMAdapter, hidden_state: int, batch_size: int = 256,
                 intervention: Intervention = Intervention(), **generate_kwargs: Any):
        """Steers tower hidden state `hidden_state` of `vlm`, `batch_size` features per `generate`, by
        `intervention` (`benchmark.steering.interventions`: add, replace or clamp); `generate_kwargs`
        go to every `generate` (e.g. min_new_tokens, cache_implementation)."""
        vlm.layer(hidden_state)  # refuses a state the language model never sees
        self.vlm, self.hidden_state, self.batch_size = vlm, hidden_state, batch_size
        self.intervention, self.generate_kwargs = intervention, generate_kwargs
        self.counts: Counter[str] = Counter()
        """Tokens so far, for what an explanation cost: `prompt_tokens` (each row's prompt, image
        tokens included) and `answer_tokens` (each row's new tokens up to its end)."""

    def answer(self, images_N: Sequence[ImageLike], prompt: str, vectors_BD: torch.Tensor,
               positions_NT: torch.Tensor | None = None, max_new_tokens: int = 64, answer_prefix: str = "",
               features_B: torch.Tensor | None = None) -> list[str]:
        """B answers; every row shows the same N images, row b steered by vectors_BD[b] at the tower
        tokens where positions_NT is true (every token when None); `features_B`: the latent each row
        clamps (clamp only)."""
        inputs = self.vlm.encode([images_N], prompt, answer_prefix)
        return self.vlm.decode(self.generate_shared(inputs, vectors_BD, positions_NT, max_new_tokens, features_B))

    def answer_rows(self, images_BN: Sequence[Sequence[ImageLike]], prompt: str, vectors_BD: torch.Tensor,
                    positions_BNT: torch.Tensor | None = None, max_new_tokens: int = 64,
                    answer_prefix: str = "", features_B: torch.Tensor | None = None) -> list[str]:
        """B answers; row b shows its own N images, steered by vectors_BD[b] where positions_BNT[b] is true."""
        answers: list[str] = []
        pixels = sum(_pixels(image) for image in images_BN[0]) if len(images_BN) else 1
        rows = max(1, min(self.batch_size, ROW_PIXELS // max(pixels, 1)))
        for start in range(0, len(vectors_BD), rows):
            stop = start + rows
            inputs = self.vlm.encode(images_BN[start:stop], prompt, answer_prefix)
            positions = None if positions_BNT is None else positions_BNT[start:stop]
            features = None if features_B is None else features_B[start:stop]
            answers += self.vlm.decode(self.generate_rows(inputs, vectors_BD[start:stop], positions, max_new_tokens,
                                                          features))
        return answers

    @torch.no_grad()
    def generate_shared(self, inputs: Mapping[str, torch.Tensor], vectors_BD: torch.Tensor,
                        positions_NT: torch.Tensor | None, max_new_tokens: int,
                        features_B: torch.Tensor | None = None) -> list[torch.Tensor]:
        """New token ids per row (pads after an early stop). `inputs`: one encoded row with its N
        images' `pixel_values`, as `VLMAdapter.encode` gives it; the prefix runs once for all rows
        (and a clamp's codes are encoded once from it)."""
        prefix_NTD = self.vlm.tower_prefix(inputs["pixel_values"], self.hidden_state)
        n_images = len(prefix_NTD)
        text = {k: v for k, v in inputs.items() if k != "pixel_values"}
        out: list[torch.Tensor] = []
        for start in range(0, len(vectors_BD), self.batch_size):
            vectors_bD = vectors_BD[start:start + self.batch_size]
            b = len(vectors_bD)
            features_b = None if features_B is None else features_B[start:start + self.batch_size]
            positions = None if positions_NT is None else positions_NT.repeat(b, 1)
            prefix_nTD = prefix_NTD.unsqueeze(0).expand(b, -1, -1, -1).flatten(0, 1)
            hidden_nTD = self.intervention(prefix_nTD, vectors_bD.repeat_interleave(n_images, dim=0), positions,
                                           _per_image(features_b, n_images),
                                           self.intervention.shared_codes(prefix_NTD, features_b))
            out += self._generate(hidden_nTD, {k: v.expand(b, -1) for k, v in text.items()}, max_new_tokens)
        return out

    @torch.no_grad()
    def generate_rows(self, inputs: Mapping[str, torch.Tensor], vectors_bD: torch.Tensor,
                      positions_bNT: torch.Tensor | None, max_new_tokens: int,
                      features_b: torch.Tensor | None = None) -> list[torch.Tensor]:
        """New token ids per row for one batch of encoded rows, each with its own N images."""
        n_images = len(inputs["pixel_values"]) // len(vectors_bD)
        prefix_nTD = self.vlm.tower_prefix(inputs["pixel_values"], self.hidden_state)
        positions = None if positions_bNT is None else positions_bNT.flatten(0, 1)
        hidden = self.intervention(prefix_nTD, vectors_bD.repeat_interleave(n_images, dim=0), positions,
                                   _per_image(features_b, n_images))
        return self._generate(hidden, {k: v for k, v in inputs.items() if k != "pixel_values"}, max_new_tokens)

    @torch.no_grad()
    def tower_states(self, images: torch.Tensor | Sequence[ImageLike], batch_size: int = 512) -> Iterator[torch.Tensor]:
        """The top-k activation pass: tower hidden state L of each image, (n, T, D) per batch of n,
        for the SAE to encode. `images`: (N, C, H, W) pixel values, or images to process per batch."""
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            pixels = batch if isinstance(batch, torch.Tensor) else self.vlm.pixel_values(batch)
            yield self.vlm.tower_prefix(pixels, self.hidden_state)

    def _generate(self, hidden_nTD: torch.Tensor, text: Mapping[str, torch.Tensor],
                  max_new_tokens: int) -> list[torch.Tensor]:
        features = self.vlm.image_features(hidden_nTD, self.hidden_state)
        out = self.vlm.model.generate(**text, mm_encoder_outputs={"image": self.vlm.encoder_output(features)},
                                      max_new_tokens=max_new_tokens, do_sample=False, **self.generate_kwargs)
        new_bS = out[:, text["input_ids"].shape[1]:]
        pad = self.vlm.model.generation_config.pad_token_id
        mask = text.get("attention_mask")
        self.counts["prompt_tokens"] += int(mask.sum()) if mask is not None else text["input_ids"].numel()
        self.counts["answer_tokens"] += int((new_bS != pad).sum()) if pad is not None else new_bS.numel()
        return list(new_bS)


def _pixels(image: ImageLike) -> int:
    """Pixels of one image: a PIL image, or an (H, W, C) array as the harness passes them."""
    size = getattr(image, "size", None)
    return size[0] * size[1] if isinstance(size, tuple) else image.shape[0] * image.shape[1]


def _per_image(features_b: torch.Tensor | None, n_images: int) -> torch.Tensor | None:
    """Each row's latent repeated for its images, as vectors are."""
    return None if features_b is None else features_b.repeat_interleave(n_images)
