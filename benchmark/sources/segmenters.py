"""Text-grounded segmenters (the `segmenter` capability, `benchmark.sources.capabilities.Segmenter`):
what localization IoU masks an explanation's referent with in a feature's top images.

- `grounding-sam`: the paper's LangSAM recipe through transformers: Grounding DINO boxes what the
  text names, SAM masks each box, the image's mask is the union;
- `clipseg`: CLIPSeg's per-pixel text relevance, thresholded.

    [segmenter]
    kind = "grounding-sam"
    box_threshold = 0.3

Both segment the scoring pool's images at their own resolution and return a patch mask on the
explained tower's grid (`patch_masks`). Masks are cached on disk by the segmenter's identity, the
text and the segmented images' pixels; the models load on the first segmentation not cached.
Plug-ins register under the entry-point group `featurebench.segmenters`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmark.cache import config_hash
from benchmark.config.models import DTYPES
from benchmark.identity import code_identity
from benchmark.registry import Registry, UsageError, class_contract, warn
from benchmark.sources.capabilities import SEGMENT_OPTIONS, checked_offers
from benchmark.sources.components import cached_array, content, require, torch_device

_A_SEGMENTER = class_contract("a segmenter: a class with a `settings` dataclass, check() and segment()",
                              ("settings", "check", "segment"))
SEGMENTERS: Registry[type] = Registry("segmenter", entry_point_group="featurebench.segmenters",
                                      contract=lambda obj: checked_offers(_A_SEGMENTER(obj)))
"""Segmenter kinds: classes built by `open_component(SEGMENTERS, table, where, images=, patch=, cache_dir=)`."""

MIN_COVER = 0.5
"""Share of a patch's pixels the pixel mask must cover for the patch to be on."""


def patch_masks(masks_IHW: np.ndarray, patch: int) -> np.ndarray:
    """(I, P) bool, P = (H // patch) * (W // patch) patches row-major: a patch is on when at least
    half of its pixels are in the mask (pixels past the last whole patch are dropped).

    Half, not any pixel: each patch goes to whichever side of the mask's edge covers most of it, so
    the patch mask keeps about the pixel mask's area, where `any` would grow every mask by up to a
    patch along its whole border and inflate IoU against a feature's (also coarse) patch map. (The
    world's exact masks count a patch from 10%, so that objects smaller than a patch still show; a
    segmenter's edges are uncertain by a few pixels, which rounding absorbs.)"""
    n, h, w = masks_IHW.shape
    rows, cols = h // patch, w // patch
    grid = masks_IHW[:, :rows * patch, :cols * patch].reshape(n, rows, patch, cols, patch)
    return grid.mean(axis=(2, 4), dtype=np.float64).reshape(n, -1) >= MIN_COVER


class PixelSegmenter:
    """What the segmenters share: the cache, batching, an empty text, the patch grid and the checks
    of their checkpoints. A subclass sets `settings` and `checkpoints`, loads its models in `_load`
    and masks one batch of images in `pixel_masks`."""

    settings: ClassVar[type]
    checkpoints: ClassVar[dict[str, tuple[str, ...]]]
    """Settings field naming a checkpoint -> the model_types its config.json may have."""

    def __init__(self, settings, images: Callable[..., np.ndarray], patch: int, cache_dir: Path):
        """`images(index_I[, pool])`: images `index_I` of the scoring pool (or of `pool`: topk),
        decoded on demand."""
        self.config, self.patch, self.cache_dir = settings, patch, Path(cache_dir)
        self.device = torch_device(settings.device)
        self.dtype = torch.float32
        self._images, self._models = images, None

    def check(self) -> None:
        """A one-line UsageError when a checkpoint directory lacks config.json or holds another kind
        of model; reads no weights. Hub ids are checked when they load."""
        for key, model_types in self.checkpoints.items():
            path = getattr(self.config, key)
            local = require("segmenter", key, path, "config.json", "transformers checkpoint")
            if local is None:
                continue
            try:
                found = json.loads((local / "config.json").read_text()).get("model_type")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                raise UsageError(f"[segmenter] {key} {path}: config.json is not a JSON object") from None
            if found not in model_types:
                raise UsageError(f"[segmenter] {key} {path}: a {found} checkpoint; {key} needs a "
                                 f"{' or '.join(model_types)} one")

    @cached_property
    def identity(self) -> str:
        """What the masks depend on: the checkpoints' files (a hub id stands for itself), the other
        settings, the dtype used and this code; not the device or the batch size."""
        settings = asdict(self.config)
        for key in ("device", "batch_size", *self.checkpoints):
            settings.pop(key)
        files = {key: content(getattr(self.config, key)) for key in self.checkpoints}
        return config_hash({**settings, "files": files, "dtype": str(self.dtype), "code": code_identity(type(self))})

    offers = SEGMENT_OPTIONS

    def segment(self, text: str, index_I: np.ndarray, mask: str = "union", pool: str = "scoring") -> np.ndarray:
        """(I, P) bool: the patches of images `index_I` of `pool` that show what `text` names (`mask`:
        the union of every mask found, or the first alone); all off for an empty text. The cache key
        hashes the images' pixels, so it needs no pool identity from the caller."""
        index_I = np.asarray(index_I, dtype=np.int64)
        images_IHWC = np.ascontiguousarray(self._images(index_I) if pool == "scoring" else self._images(index_I, pool))
        _, h, w, _ = images_IHWC.shape
        if not text.strip() or len(index_I) == 0:
            return np.zeros((len(index_I), (h // self.patch) * (w // self.patch)), bool)
        pixels = hashlib.sha256(images_IHWC.tobytes()).hexdigest()[:16]
        key = config_hash({"segmenter": self.identity, "text": text, "patch": self.patch,
                           "images": [*images_IHWC.shape, pixels]} | ({"mask": mask} if mask != "union" else {}))
        return cached_array(self.cache_dir / f"{key}.npy", lambda: self._segment(text, images_IHWC, mask))

    def _segment(self, text: str, images_IHWC: np.ndarray, mask: str) -> np.ndarray:
        step, n = self.config.batch_size, len(images_IHWC)
        starts = tqdm(range(0, n, step), desc="segmenter", unit="batch", leave=False, disable=n <= step)
        parts = [patch_masks(self.pixel_masks(text, images_IHWC[start:start + step], mask), self.patch)
                 for start in starts]
        return np.concatenate(parts)

    def models(self) -> tuple:
        """The models and processors, loaded once (after `check`); a checkpoint that fails to load is
        a one-line UsageError."""
        if self._models is None:
            self.check()
            try:
                self._models = self._load()
            except (OSError, ValueError) as e:
                paths = ", ".join(getattr(self.config, key) for key in self.checkpoints)
                raise UsageError(f"[segmenter] cannot load {paths}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return self._models

    def _load(self) -> tuple:
        raise NotImplementedError

    def pixel_masks(self, text: str, images_IHWC: np.ndarray, mask: str = "union") -> np.ndarray:
        """(I, H, W) bool: the pixels of each image that show what `text` names (`mask`: union or first)."""
        raise NotImplementedError

    def _inputs(self, batch) -> dict[str, torch.Tensor]:
        """A processor's output on the models' device, floating tensors in the models' dtype."""
        return {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in batch.items()}


@dataclass(frozen=True)
class GroundingSamSettings:
    detector: str = "IDEA-Research/grounding-dino-base"
    """Grounding DINO checkpoint with its processor (directory or hub id): boxes for the text."""
    sam: str = "facebook/sam-vit-base"
    """SAM or SAM 2 checkpoint with its processor (`facebook/sam2.1-hiera-large`: LangSAM's): one mask
    inside each box."""
    box_threshold: float = 0.3
    """A box is kept when its best text-token score exceeds this (LangSAM's default)."""
    text_threshold: float = 0.25
    """A kept box counts only when a word of the text scores above this (LangSAM's default): a box
    that only special tokens or the full stop point at names nothing."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu. In no cache key."""
    dtype: str | None = None
    """float32, bfloat16 or float16; None: float32 (the models are small, and lower precision moves
    box scores across box_threshold)."""
    batch_size: int = 8
    """Images per forward pass; masks do not depend on it. In no cache key."""

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"[segmenter] dtype {self.dtype!r}; choose {', '.join(DTYPES)}")
        if self.batch_size < 1:
            raise UsageError(f"[segmenter] batch_size must be at least 1, not {self.batch_size}")


class GroundingSamSegmenter(PixelSegmenter):
    """LangSAM: Grounding DINO boxes the text (lowercased, ending in a full stop, as it was trained;
    cut to the detector's `max_text_len` tokens, as its own code cuts longer texts, with a warning),
    SAM or SAM 2 (as LangSAM: SAM 2.1 Hiera-L; by the checkpoint's model_type) masks each box with one
    mask (no multimask choice), and an image's mask is the union, or the first box's; an image with no
    box gets an empty mask."""

    settings = GroundingSamSettings
    checkpoints = {"detector": ("grounding-dino",), "sam": ("sam", "sam2")}

    def __init__(self, settings: GroundingSamSettings, images: Callable[[np.ndarray], np.ndarray], patch: int,
                 cache_dir: Path):
        super().__init__(settings, images, patch, cache_dir)
        self.dtype = getattr(torch, settings.dtype or "float32")
        self._cut: set[str] = set()

    def _load(self) -> tuple:
        from transformers import (
            AutoConfig,
            AutoProcessor,
            GroundingDinoForObjectDetection,
            Sam2Model,
            Sam2Processor,
            SamModel,
            SamProcessor,
        )

        detector = GroundingDinoForObjectDetection.from_pretrained(self.config.detector, dtype=self.dtype)
        sam2 = AutoConfig.from_pretrained(self.config.sam).model_type == "sam2"  # SAM 2.1, as LangSAM uses
        sam = (Sam2Model if sam2 else SamModel).from_pretrained(self.config.sam, dtype=self.dtype)
        return (AutoProcessor.from_pretrained(self.config.detector), detector.to(self.device).eval(),
                (Sam2Processor if sam2 else SamProcessor).from_pretrained(self.config.sam), sam.to(self.device).eval())

    @staticmethod
    def prompt(text: str) -> str:
        """The text as Grounding DINO was trained to read it: lowercased, ending in a full stop."""
        prompt = text.strip().lower()
        return prompt if prompt.endswith(".") else f"{prompt}."

    @cached_property
    def _reader(self) -> tuple:
        """(tokenizer, max_text_len) of the detector, read without its weights."""
        from transformers import AutoConfig, AutoTokenizer

        path = self.config.detector
        return AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path).max_text_len

    def tokens(self, text: str) -> tuple[int, int]:
        """(text tokens of the detector's prompt for `text`, the most it reads: 256 for Grounding DINO base)."""
        tokenizer, limit = self._reader
        return len(tokenizer(self.prompt(text))["input_ids"]), limit

    def cut(self, text: str) -> bool:
        """Whether the detector reads only the first `max_text_len` tokens of `text`."""
        tokens, limit = self.tokens(text)
        return bool(text.strip()) and tokens > limit

    @torch.inference_mode()
    def pixel_masks(self, text: str, images_IHWC: np.ndarray, mask: str = "union") -> np.ndarray:
        detector_processor, detector, sam_processor, sam = self.models()
        n, h, w, _ = images_IHWC.shape
        prompt = self.prompt(text)
        tokens, limit = self.tokens(text)
        if tokens > limit and prompt not in self._cut:  # once per text, not per batch of its images
            self._cut.add(prompt)
            warn(f"[segmenter] Grounding DINO reads at most {limit} text tokens; an explanation of {tokens} tokens is "
                 f"cut to its first {limit} (as Grounding DINO's own code cuts it; the row's localization_text_cut "
                 f"says so)")
        batch = detector_processor(images=_pil(images_IHWC), text=[prompt] * n, truncation=True, max_length=limit,
                                   return_tensors="pt")
        found = detector_processor.post_process_grounded_object_detection(
            detector(**self._inputs(batch)), batch["input_ids"], threshold=self.config.box_threshold,
            text_threshold=self.config.text_threshold, target_sizes=[(h, w)] * n)
        specials = detector_processor.tokenizer.all_special_tokens
        boxes = {i: [box for box, words in zip(r["boxes"].float().tolist(), r["text_labels"])
                     if _names(words, specials)] for i, r in enumerate(found)}
        boxes = {i: b[:1] if mask == "first" else b for i, b in boxes.items() if b}  # first: as the detector orders them
        masks_IHW = np.zeros((n, h, w), bool)
        if not boxes:
            return masks_IHW
        most = max(map(len, boxes.values()))  # SAM wants as many boxes for each image: repeat one, same union
        prompts = sam_processor(images=_pil(images_IHWC[list(boxes)]), return_tensors="pt",
                                input_boxes=[b + b[-1:] * (most - len(b)) for b in boxes.values()])
        inputs = self._inputs(prompts)
        out = sam(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False)
        sizes = [prompts["original_sizes"]] + ([prompts["reshaped_input_sizes"]] if "reshaped_input_sizes" in prompts
                                               else [])  # SAM's processor needs both, SAM 2's the first
        masks = sam_processor.post_process_masks(out.pred_masks.float().cpu(), *sizes)
        for i, mask_B1HW in zip(boxes, masks):
            masks_IHW[i] = mask_B1HW.any(dim=(0, 1)).numpy()
        return masks_IHW


@dataclass(frozen=True)
class ClipSegSettings:
    path: str = "CIDAS/clipseg-rd64-refined"
    """CLIPSeg checkpoint with its processor (directory or hub id)."""
    threshold: float = 0.4
    """A pixel is in the mask when the sigmoid of its logit exceeds this."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu. In no cache key."""
    batch_size: int = 8
    """Images per forward pass; masks do not depend on it. In no cache key."""

    def __post_init__(self):
        if self.batch_size < 1:
            raise UsageError(f"[segmenter] batch_size must be at least 1, not {self.batch_size}")


class ClipSegSegmenter(PixelSegmenter):
    """CLIPSeg: the text's relevance map at the model's resolution (352 px), upsampled bilinearly to
    the image's pixels and thresholded after a sigmoid. Runs in float32."""

    settings = ClipSegSettings
    checkpoints = {"path": ("clipseg",)}

    def _load(self) -> tuple:
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        model = CLIPSegForImageSegmentation.from_pretrained(self.config.path)
        return CLIPSegProcessor.from_pretrained(self.config.path), model.to(self.device).eval()

    @cached_property
    def _tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.config.path)

    def cut(self, text: str) -> bool:
        """Whether CLIPSeg's text encoder reads only the first of `text`'s tokens (77 for CLIP)."""
        return len(self._tokenizer(text)["input_ids"]) > self._tokenizer.model_max_length

    @torch.inference_mode()
    def pixel_masks(self, text: str, images_IHWC: np.ndarray, mask: str = "union") -> np.ndarray:
        """One mask per text and image, so the first mask is the union."""
        processor, model = self.models()
        n, h, w, _ = images_IHWC.shape
        batch = processor(text=[text] * n, images=_pil(images_IHWC), padding=True, truncation=True, return_tensors="pt")
        logits_Ihw = model(**self._inputs(batch)).logits
        logits_IHW = torch.nn.functional.interpolate(logits_Ihw[:, None].float(), size=(h, w), mode="bilinear",
                                                     align_corners=False)[:, 0]
        return (logits_IHW.sigmoid() > self.config.threshold).cpu().numpy()


def _pil(images_IHWC: np.ndarray) -> list[Image.Image]:
    """Images as PIL images, whose channel layout no processor has to guess."""
    return [Image.fromarray(image) for image in images_IHWC]


def _names(words: str, specials: list[str]) -> bool:
    """Whether a box's label (the decoded tokens above text_threshold) holds a word, not only special
    tokens and punctuation."""
    for token in specials:
        words = words.replace(token, "")
    return any(ch.isalnum() for ch in words)


SEGMENTERS.register("grounding-sam")(GroundingSamSegmenter)
SEGMENTERS.register("clipseg")(ClipSegSegmenter)
