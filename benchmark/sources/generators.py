"""Text-to-image generators (the `generator` capability, `benchmark.sources.capabilities.Generator`):
what generation AUROC draws an explanation with. The paper uses Stable Diffusion 3.5 (CoSy: SDXL);
`diffusers` runs any text-to-image pipeline saved with `save_pretrained` or named by a hub id.

    [generator]
    kind = "diffusers"
    path = "stabilityai/stable-diffusion-3.5-medium"
    steps = 28

Plug-in generators register under the entry-point group `featurebench.generators`: a class with a
`settings` dataclass, `__init__(settings, image_size, cache_dir)`, `check()` and `draw`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmark.cache import config_hash
from benchmark.config.models import DTYPES
from benchmark.identity import code_identity
from benchmark.registry import Registry, UsageError, class_contract
from benchmark.sources.components import cached_array, content, require, torch_device
from benchmark.sources.image_pools import square

MAX_SEQUENCE_LENGTH = 256
"""The T5 tokens SD 3's pipelines read by default (their `max_sequence_length`)."""
GENERATORS: Registry[type] = Registry("generator", entry_point_group="featurebench.generators", contract=class_contract(
    "a generator: a class with a `settings` dataclass, check() and draw()", ("settings", "check", "draw")))
"""Generator kinds: classes built by `open_component(GENERATORS, table, where, image_size=..., cache_dir=...)`."""


@dataclass(frozen=True)
class DiffusersSettings:
    path: str
    """A pipeline directory (`save_pretrained`, with model_index.json) or a hub id."""
    steps: int = 28
    """Denoising steps per image (SD 3.5's default)."""
    guidance: float = 3.5
    """Classifier-free guidance scale."""
    size: int | None = None
    """Side of the generated square images before they are resized to the pools' size; None: the
    pipeline's default."""
    batch_size: int = 8
    """Images per pipeline call; images do not depend on it. In no cache key."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu. In no cache key."""
    dtype: str | None = None
    """float32, bfloat16 or float16; None: bfloat16 on an accelerator, float32 on the CPU."""

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"[generator] dtype {self.dtype!r}; choose {', '.join(DTYPES)}")
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError(f"[generator] steps and batch_size must be at least 1, not {self.steps}, {self.batch_size}")


class DiffusersGenerator:
    """A diffusers text-to-image pipeline as a generator: `n` images of a text, each from its own
    random stream (seeded by the call's seed and the image's index, so an image does not depend on
    the batch size), centre-cropped and resized to the pools' size like pool images. Images are
    cached on disk by the generator's identity, the text, the seed and `n`; the pipeline loads on the
    first draw that is not cached."""

    settings = DiffusersSettings

    def __init__(self, settings: DiffusersSettings, image_size: int, cache_dir: Path):
        self.config, self.image_size, self.cache_dir = settings, image_size, Path(cache_dir)
        self.device = torch_device(settings.device)
        cpu = torch.device(self.device).type == "cpu"  # as for VLMs: bf16 matmuls on the CPU are slow and inexact
        self.dtype = getattr(torch, settings.dtype) if settings.dtype else torch.float32 if cpu else torch.bfloat16
        self._pipeline = None

    def check(self) -> None:
        """A one-line UsageError when `path` is a directory without a diffusers pipeline; reads no weights."""
        require("generator", "path", self.config.path, "model_index.json", "diffusers pipeline")

    @cached_property
    def identity(self) -> str:
        """What the images depend on: the pipeline's files (a hub id stands for itself), steps,
        guidance, size, the dtype used and this code; not the device or the batch size."""
        settings = asdict(self.config)
        for key in ("path", "device", "batch_size"):
            del settings[key]
        return config_hash({**settings, "files": content(self.config.path), "dtype": str(self.dtype),
                            "code": code_identity(type(self))})

    @cached_property
    def _tokenizers(self) -> list:
        """The pipeline's tokenizers (`tokenizer`, `tokenizer_2`, ... folders), read without its weights."""
        from transformers import AutoTokenizer

        local = Path(self.config.path)
        names = sorted(p.name for p in local.glob("tokenizer*") if p.is_dir()) if local.is_dir() else ["tokenizer"]
        return [AutoTokenizer.from_pretrained(self.config.path, subfolder=name) for name in names]

    def cut(self, text: str) -> bool:
        """Whether a text encoder of the pipeline reads only part of `text`: more tokens than its
        tokenizer's `model_max_length` (77 for CLIP), or than `MAX_SEQUENCE_LENGTH` (T5 in SD 3); the
        pipeline cuts it with its own warning."""
        return any(len(t(text)["input_ids"]) > min(t.model_max_length, MAX_SEQUENCE_LENGTH) for t in self._tokenizers)

    def draw(self, text: str, n: int, seed: int) -> np.ndarray | None:
        """(n, S, S, 3) uint8 images of `text` at the pools' side S; None for an empty text."""
        if not text.strip():
            return None
        key = config_hash({"generator": self.identity, "text": text, "seed": seed, "n": n, "side": self.image_size})
        return cached_array(self.cache_dir / f"{key}.npy", lambda: self._generate(text, n, seed))

    def _generate(self, text: str, n: int, seed: int) -> np.ndarray:
        pipeline = self._load()
        side, step = self.config.size, self.config.batch_size
        images_NHWC = np.empty((n, self.image_size, self.image_size, 3), np.uint8)
        for start in tqdm(range(0, n, step), desc="generator", unit="batch", leave=False, disable=n <= step):
            index = range(start, min(start + step, n))
            streams = [torch.Generator().manual_seed(image_seed(seed, i)) for i in index]  # CPU: any device alike
            out = pipeline(prompt=[text] * len(index), num_inference_steps=self.config.steps,
                           guidance_scale=self.config.guidance, height=side, width=side, generator=streams,
                           output_type="pil")
            for i, image in zip(index, out.images):
                images_NHWC[i] = square(image, self.image_size)
        return images_NHWC

    def _load(self):
        """The pipeline, loaded once: AutoPipelineForText2Image, else the class model_index.json names."""
        if self._pipeline is None:
            self.check()
            from diffusers import AutoPipelineForText2Image, DiffusionPipeline

            path = self.config.path
            try:
                try:
                    pipeline = AutoPipelineForText2Image.from_pretrained(path, torch_dtype=self.dtype)
                except ValueError:  # a pipeline class AutoPipeline has no text-to-image mapping for
                    pipeline = DiffusionPipeline.from_pretrained(path, torch_dtype=self.dtype)
            except (OSError, ValueError) as e:
                raise UsageError(f"[generator] path {path}: cannot load a pipeline: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            pipeline.set_progress_bar_config(disable=True)
            self._pipeline = pipeline.to(self.device)
        return self._pipeline


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index` of a draw seeded `seed`: distinct streams for distinct pairs."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


GENERATORS.register("diffusers")(DiffusersGenerator)
