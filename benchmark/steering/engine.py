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
- With the dynamic KV cache and more than one row, decoding runs in rounds (`FIRST_ROUND` new
  tokens, then doubling); rows that ended leave the batch between rounds, their cache rows dropped. One `generate` to the
  longest answer kept every finished row decoding: on the world, 69% of steering's and 76% of
  hybrid's row-steps came after the row's end.

Not done, on purpose:
- Sharing the KV cache of the text before the image. That prefix is 1 to 5 tokens (`USER: `,
  `<bos><start_of_turn>user\\n`) of a 280 to 600 token prefill, under 2% of it; what follows the
  image depends on the image tokens, so it differs per row.
- A static cache by default. With `static_cache=True` the KV cache is transformers' static one:
  written in place, where the default dynamic cache concatenates every layer's keys and values at
  each step (a copy of the whole cache per new token, twice the traffic attention itself needs),
  and its decoding step compiled by transformers on CUDA (CUDA graphs: no per-step Python or
  launch cost). Every `generate` then has the planned number of rows, the last partial batch
  padded with copies of its last row (their answers dropped), so a batch shape compiles once. On
  the CPU it wins at large batches (`bench --shape cpu-llava --static-cache`, docs/measurements.md),
  but there much of the dynamic cache's cost is the kernel mapping each step's fresh copy, which a
  GPU's caching allocator avoids; whether it wins on a GPU, compile time included, is for the GPU
  bench to show before it becomes the default there: its `engine_static` rival at forced lengths,
  and `steering_lengths`, where answers end at varied lengths and the dynamic cache's rounds drop
  the rows that ended while a static batch decodes to its longest answer.

Rows per `generate`: `batch_size` at most; on CUDA as many as the free device memory holds
(`benchmark.steering.memory`), planned once per prompt shape so every batch has the same shape.
On the CPU, per-row images are bounded by `ROW_PIXELS` (host memory for their pixel values).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from transformers import StaticCache, StoppingCriteriaList

from benchmark.models.adapters.base import ImageLike, VLMAdapter
from benchmark.steering.clock import StageClock
from benchmark.steering.interventions import Intervention
from benchmark.steering.memory import device_memory, row_bytes, rows_that_fit

FIRST_ROUND = 4
"""New tokens in a dynamic-cache `generate`'s first round; each later round doubles the tokens so far
(4, 4, 8, 16, ...), so a 100-token answer takes 6 rounds (`SteeringEngine._decode_in_rounds`)."""
ROW_PIXELS = 2 ** 25
"""Image pixels per `generate` of per-row images at most on the CPU (their pixel values are 384 MB
of float32): hybrid's five 896-px images a row allow 8 rows; the world's 32-px ones never cut a batch."""


class SteeringEngine:
    def __init__(self, vlm: VLMAdapter, hidden_state: int, batch_size: int = 256,
                 intervention: Intervention = Intervention(), static_cache: bool = False,
                 clock: StageClock | None = None, **generate_kwargs: Any):
        """Steers tower hidden state `hidden_state` of `vlm`, at most `batch_size` features per
        `generate`, by `intervention` (`benchmark.steering.interventions`: add, replace or clamp);
        `static_cache`: transformers' static KV cache, batches padded to one shape; `clock`: times
        each batch's stages (`benchmark.steering.clock`); `generate_kwargs` go to every `generate`
        (e.g. min_new_tokens)."""
        vlm.layer(hidden_state)  # refuses a state the language model never sees
        self.vlm, self.hidden_state, self.batch_size = vlm, hidden_state, batch_size
        self.intervention, self.static_cache, self.clock = intervention, static_cache, clock
        self.generate_kwargs = dict(generate_kwargs)
        if clock is not None:
            self.generate_kwargs["stopping_criteria"] = StoppingCriteriaList([clock])
        self.plans: dict[tuple[int, int, int], dict] = {}
        """Rows per `generate` by (images per row, prompt tokens, new tokens), with what decided them."""
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
        if not len(images_BN):
            return answers
        if device_memory(self.vlm.device) is not None:
            prompt_tokens = self.vlm.encode(images_BN[:1], prompt, answer_prefix)["input_ids"].shape[1]
            rows = self.rows_per_generate(len(images_BN[0]), prompt_tokens, max_new_tokens)
        else:
            pixels = sum(_pixels(image) for image in images_BN[0])
            rows = max(1, min(self.batch_size, ROW_PIXELS // max(pixels, 1)))
        for start in range(0, len(vectors_BD), rows):
            stop = start + rows
            inputs = self.vlm.encode(images_BN[start:stop], prompt, answer_prefix)
            positions = None if positions_BNT is None else positions_BNT[start:stop]
            features = None if features_B is None else features_B[start:stop]
            answers += self.vlm.decode(self.generate_rows(inputs, vectors_BD[start:stop], positions, max_new_tokens,
                                                          features, rows))
        return answers

    def rows_per_generate(self, n_images: int, prompt_tokens: int, new_tokens: int) -> int:
        """Rows one `generate` takes for rows of `n_images` images and `prompt_tokens`: `batch_size`,
        lowered on CUDA to what free device memory holds; planned once per shape (`plans`)."""
        key = (n_images, prompt_tokens, new_tokens)
        if key not in self.plans:
            plan: dict = {"rows": self.batch_size, "batch_size": self.batch_size}
            memory = device_memory(self.vlm.device)
            if memory is not None:
                per_row = row_bytes(self.vlm.model.config, prompt_tokens, new_tokens, n_images,
                                    len(self.vlm.token_patches()), self.vlm.dtype.itemsize)
                plan.update(rows=rows_that_fit(per_row, memory.free, self.batch_size), free_bytes=memory.free,
                            allocated_bytes=memory.allocated, row_bytes=per_row.as_dict())
            self.plans[key] = plan
        return self.plans[key]["rows"]

    @torch.no_grad()
    def generate_shared(self, inputs: Mapping[str, torch.Tensor], vectors_BD: torch.Tensor,
                        positions_NT: torch.Tensor | None, max_new_tokens: int,
                        features_B: torch.Tensor | None = None) -> list[torch.Tensor]:
        """New token ids per row (pads after an early stop). `inputs`: one encoded row with its N
        images' `pixel_values`, as `VLMAdapter.encode` gives it; the prefix runs once for all rows
        (and a clamp's codes are encoded once from it)."""
        if self.clock is not None:
            self.clock.begin()
        prefix_NTD = self.vlm.tower_prefix(inputs["pixel_values"], self.hidden_state)
        n_images = len(prefix_NTD)
        text = {k: v for k, v in inputs.items() if k != "pixel_values"}
        rows = self.rows_per_generate(n_images, text["input_ids"].shape[1], max_new_tokens)
        out: list[torch.Tensor] = []
        for start in range(0, len(vectors_BD), rows):
            vectors_bD = vectors_BD[start:start + rows]
            b = len(vectors_bD)
            features_b = None if features_B is None else features_B[start:start + rows]
            positions = None if positions_NT is None else positions_NT.repeat(b, 1)
            prefix_nTD = prefix_NTD.unsqueeze(0).expand(b, -1, -1, -1).flatten(0, 1)
            hidden_nTD = self.intervention(prefix_nTD, vectors_bD.repeat_interleave(n_images, dim=0), positions,
                                           _per_image(features_b, n_images),
                                           self.intervention.shared_codes(prefix_NTD, features_b))
            out += self._generate(hidden_nTD, {k: v.expand(b, -1) for k, v in text.items()}, max_new_tokens, rows)
        return out

    @torch.no_grad()
    def generate_rows(self, inputs: Mapping[str, torch.Tensor], vectors_bD: torch.Tensor,
                      positions_bNT: torch.Tensor | None, max_new_tokens: int,
                      features_b: torch.Tensor | None = None, rows: int | None = None) -> list[torch.Tensor]:
        """New token ids per row for one batch of encoded rows, each with its own N images; `rows`:
        the batch shape a static cache pads to (default: these rows)."""
        if self.clock is not None:
            self.clock.begin()
        n_images = len(inputs["pixel_values"]) // len(vectors_bD)
        prefix_nTD = self.vlm.tower_prefix(inputs["pixel_values"], self.hidden_state)
        positions = None if positions_bNT is None else positions_bNT.flatten(0, 1)
        hidden = self.intervention(prefix_nTD, vectors_bD.repeat_interleave(n_images, dim=0), positions,
                                   _per_image(features_b, n_images))
        return self._generate(hidden, {k: v for k, v in inputs.items() if k != "pixel_values"}, max_new_tokens,
                              rows or len(vectors_bD))

    @torch.no_grad()
    def tower_states(self, images: torch.Tensor | Sequence[ImageLike], batch_size: int = 512) -> Iterator[torch.Tensor]:
        """The top-k activation pass: tower hidden state L of each image, (n, T, D) per batch of n,
        for the SAE to encode. `images`: (N, C, H, W) pixel values, or images to process per batch."""
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            pixels = batch if isinstance(batch, torch.Tensor) else self.vlm.pixel_values(batch)
            yield self.vlm.tower_prefix(pixels, self.hidden_state)

    def _generate(self, hidden_nTD: torch.Tensor, text: Mapping[str, torch.Tensor], max_new_tokens: int,
                  rows: int) -> list[torch.Tensor]:
        """Finishes the tower and generates; with a static cache a partial batch is padded to `rows`
        with copies of its last row, whose answers are dropped."""
        b = text["input_ids"].shape[0]
        if self.static_cache and b < rows:
            text = {k: _pad_rows(v, rows) for k, v in text.items()}
            hidden_nTD = _pad_rows(hidden_nTD.unflatten(0, (b, -1)), rows).flatten(0, 1)
        features = self.vlm.image_features(hidden_nTD, self.hidden_state)
        if self.clock is not None:
            self.clock.tower_done(text["input_ids"].shape[0])
        encoded = {"image": self.vlm.encoder_output(features)}
        with self.vlm.decoding():
            if self.static_cache or b == 1:  # a fixed shape to compile; no other row to wait for
                cache = {"cache": self._static_cache(text["input_ids"].shape[1] + max_new_tokens)} \
                    if self.static_cache else {}
                out = self.vlm.model.generate(**text, mm_encoder_outputs=encoded, max_new_tokens=max_new_tokens,
                                              do_sample=False, **cache, **self.generate_kwargs)
                new_bS = out[:b, text["input_ids"].shape[1]:]
            else:
                new_bS = self._decode_in_rounds(text, encoded, max_new_tokens)
        text = {k: v[:b] for k, v in text.items()}
        pad = self.vlm.model.generation_config.pad_token_id
        mask = text.get("attention_mask")
        self.counts["prompt_tokens"] += int(mask.sum()) if mask is not None else text["input_ids"].numel()
        self.counts["answer_tokens"] += int((new_bS != pad).sum()) if pad is not None else new_bS.numel()
        return list(new_bS)

    def _static_cache(self, tokens: int) -> StaticCache:
        """A static KV cache of `tokens` positions, this call's. transformers' own
        (`cache_implementation="static"`) takes the longest of every static cache the model has made,
        to spare a recompilation: after hybrid's 2,920-token prompts, steering's 616-token rows would
        decode over 3,020 positions, four times the KV memory the plan counted (`rows_per_generate`)."""
        return StaticCache(self.vlm.model.config, max_cache_len=tokens)

    def _decode_in_rounds(self, text: Mapping[str, torch.Tensor], encoded: dict, max_new_tokens: int) -> torch.Tensor:
        """(B, S) new token ids, pads after each row's end. `generate` runs in rounds (FIRST_ROUND new
        tokens, or `min_new_tokens` if more, then as many as so far), the first given the image
        features `encoded`; between rounds the rows that ended leave the batch with their KV cache
        rows (`Cache.batch_select_indices`), and the others go on from their cache. Greedy: a row's
        tokens do not depend on the rows beside it (tests compare with the hook path, rows ending at
        different steps)."""
        model = self.vlm.model
        config = model.generation_config
        eos = config.eos_token_id
        ends = torch.tensor([t for t in ([eos] if isinstance(eos, int) else eos or []) + [config.pad_token_id]
                             if t is not None], device=model.device)
        fill = config.pad_token_id if config.pad_token_id is not None else int(ends[0])
        kwargs = dict(self.generate_kwargs)
        min_new = kwargs.pop("min_new_tokens", 0)
        prompt = text["input_ids"].shape[1]
        new_BS = torch.full((text["input_ids"].shape[0], max_new_tokens), fill, device=model.device)
        rows_R = torch.arange(len(new_BS), device=model.device)
        inputs: dict = {**text, "mm_encoder_outputs": encoded}
        done = 0
        while done < max_new_tokens:
            step = min(max_new_tokens - done, max(FIRST_ROUND, done, min_new - done))
            out = model.generate(**inputs, max_new_tokens=step, min_new_tokens=min(max(min_new - done, 0), step),
                                 do_sample=False, return_dict_in_generate=True, **kwargs)
            got_RS = out.sequences[:, prompt + done:]
            new_BS[rows_R, done:done + got_RS.shape[1]] = got_RS
            done += got_RS.shape[1]
            going_R = ~torch.isin(got_RS[:, -1], ends)
            if done >= max_new_tokens or not going_R.any():
                break
            keep_R = going_R.nonzero().squeeze(1)
            out.cache.batch_select_indices(keep_R)
            rows_R, sequences = rows_R[keep_R], out.sequences[keep_R]
            inputs = {"input_ids": sequences, "cache": out.cache,
                      **{k: _extended(k, v[keep_R], prompt, sequences.shape[1]) for k, v in text.items()
                         if k != "input_ids"}}
        return new_BS


def _pixels(image: ImageLike) -> int:
    """Pixels of one image: a PIL image, or an (H, W, C) array as the harness passes them."""
    size = getattr(image, "size", None)
    return size[0] * size[1] if isinstance(size, tuple) else image.shape[0] * image.shape[1]


def _extended(name: str, value_B: torch.Tensor, prompt: int, length: int) -> torch.Tensor:
    """An input of the prompt's rows for a round that goes on from `length` tokens: a per-token one
    (B, prompt) covers the tokens generated so far (attention mask 1; token types 0, text); any
    other is as it was."""
    if value_B.ndim != 2 or value_B.shape[1] != prompt:
        return value_B
    return torch.cat([value_B, value_B.new_full((len(value_B), length - prompt), int(name == "attention_mask"))], 1)


def _pad_rows(x_B: torch.Tensor, rows: int) -> torch.Tensor:
    """`x_B` with its last row repeated up to `rows` rows."""
    return torch.cat([x_B, x_B[-1:].expand(rows - len(x_B), *x_B.shape[1:])])


def _per_image(features_b: torch.Tensor | None, n_images: int) -> torch.Tensor | None:
    """Each row's latent repeated for its images, as vectors are."""
    return None if features_b is None else features_b.repeat_interleave(n_images)
