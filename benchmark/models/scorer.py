"""The scorer: an open_clip CLIP that judges explanations by text-image similarity.

A scorer directory holds `<name>.json` (an open_clip model config) and `open_clip_model.safetensors`,
loaded through open_clip's own `add_model_config` + `create_model`, the path any open_clip
checkpoint takes; `Scorer.open` takes any open_clip model by name too. Embeddings come back
L2-normalised.
"""
from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

from benchmark.registry import UsageError

WEIGHTS = "open_clip_model.safetensors"


BATCH_PIXELS = 2 ** 24
"""Input pixels a scorer batch reads at most (before resizing): 20 images at 896 px, 512 at 32 px."""


def images_per_batch(images_NHWC: np.ndarray) -> int:
    """Images per scorer batch: 512, or fewer when they are large."""
    if len(images_NHWC) == 0:
        return 1
    return max(1, min(512, BATCH_PIXELS // (images_NHWC.shape[1] * images_NHWC.shape[2])))


class Scorer:
    def __init__(self, model: torch.nn.Module, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        cfg = model.visual.preprocess_cfg
        self.mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def pixels(self, images_NHWC: np.ndarray) -> torch.Tensor:
        """Normalised pixels at the model's input size (images of another size are resized)."""
        x = torch.from_numpy(np.array(images_NHWC, dtype=np.uint8)).permute(0, 3, 1, 2)  # copy: inputs may be read-only views
        x = x.to(torch.promote_types(self.dtype, torch.float32)) / 255  # resized in the scorer's dtype too
        size = self.model.visual.image_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if tuple(x.shape[-2:]) != size:
            x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True).clamp(0, 1)
        return ((x - self.mean) / self.std).to(self.dtype)

    @torch.no_grad()
    def encode_images(self, images_NHWC: np.ndarray, batch: int | None = None) -> torch.Tensor:
        batch = batch or images_per_batch(images_NHWC)
        out = [self.model.encode_image(self.pixels(images_NHWC[i:i + batch]), normalize=True)
               for i in range(0, len(images_NHWC), batch)]
        return torch.cat(out)

    @torch.no_grad()
    def encode_patches(self, images_NHWC: np.ndarray, batch: int | None = None) -> torch.Tensor:
        """(N, P, D) patch tokens through the final norm and the image projection, L2-normalised: a
        text-patch similarity map in the manner of MaskCLIP, without training anything new."""
        batch = batch or images_per_batch(images_NHWC)
        visual = self.model.visual
        visual.output_tokens = True
        try:
            out = [visual(self.pixels(images_NHWC[i:i + batch]))[1] @ visual.proj
                   for i in range(0, len(images_NHWC), batch)]
        finally:
            visual.output_tokens = False
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts), normalize=True)

    def save_weights(self, dpath: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(dpath / WEIGHTS))

    @classmethod
    def create(cls, dpath: Path, name: str, model_config: dict) -> "Scorer":
        """A randomly initialised scorer whose config is written into `dpath` (to be trained)."""
        dpath.mkdir(parents=True, exist_ok=True)
        (dpath / f"{name}.json").write_text(json.dumps(model_config, indent=1))
        root = logging.getLogger()
        root.addFilter(_random_init_notice)
        try:
            return cls._from_dir(dpath, pretrained=None)
        finally:
            root.removeFilter(_random_init_notice)

    @staticmethod
    def check(model: str, pretrained: str | None = None) -> None:
        """A one-line UsageError unless `open` would find a scorer: a scorer directory holding one
        open_clip config and the weights file, or a model name open_clip knows with a known tag or a
        file. Reads no weights, so a run can check its scorer before anything is computed."""
        dpath = Path(model)
        if dpath.is_dir():
            found = sorted(p.name for p in dpath.iterdir() if not p.name.startswith("."))
            if len(_model_configs(dpath)) != 1 or WEIGHTS not in found:
                shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
                raise UsageError(f"[scorer] {model}: a scorer directory holds one open_clip config (*.json with "
                                 f"embed_dim) and {WEIGHTS}; found {shown or 'nothing'}")
            return
        if model not in open_clip.list_models():
            close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
            raise UsageError(f"unknown open_clip model {model!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        if pretrained and not Path(pretrained).is_file() and pretrained not in open_clip.list_pretrained_tags_by_model(model):
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
            raise UsageError(f"{model}: pretrained {pretrained!r} is neither a file nor a known tag (tags: {tags})")

    @classmethod
    def open(cls, model: str, pretrained: str | None = None, dtype: torch.dtype = torch.float32) -> "Scorer":
        """Any open_clip scorer: a directory in this module's format, or an open_clip model name with
        a pretrained tag (fetched by open_clip from its hub; the paper's is ViT-L-14 / openai) or a
        local checkpoint file (.pt, .bin or .safetensors); cast to `dtype` (a run measures in
        `benchmark.numerics`' dtype)."""
        cls.check(model, pretrained)
        if Path(model).is_dir():
            scorer = cls.load(Path(model))
        else:
            scorer = cls(open_clip.create_model(model, pretrained=pretrained, output_dict=True),
                         open_clip.get_tokenizer(model), model)
        scorer.model.to(dtype)
        return scorer

    @classmethod
    def load(cls, dpath: Path) -> "Scorer":
        return cls._from_dir(dpath, pretrained=str(dpath / WEIGHTS))

    @classmethod
    def _from_dir(cls, dpath: Path, pretrained: str | None) -> "Scorer":
        configs = _model_configs(dpath)
        if len(configs) != 1:
            raise FileNotFoundError(f"{dpath}: expected one open_clip model config (*.json with embed_dim), found {len(configs)}")
        config_fpath = configs[0]
        open_clip.add_model_config(config_fpath)
        name = config_fpath.stem
        model = open_clip.create_model(name, pretrained=pretrained, output_dict=True)
        return cls(model, open_clip.get_tokenizer(name), name)


def _model_configs(dpath: Path) -> list[Path]:
    """The open_clip model configs in a directory: JSON files with an `embed_dim`."""
    out = []
    for fpath in sorted(dpath.glob("*.json")):
        try:
            if "embed_dim" in json.loads(fpath.read_text()):
                out.append(fpath)
        except (ValueError, UnicodeDecodeError):  # not JSON: not a config
            continue
    return out


def _random_init_notice(record: logging.LogRecord) -> bool:
    """False for open_clip's 'No pretrained weights loaded' warning, which a scorer about to be
    trained expects; it reads as a failure in a build's output."""
    return not record.getMessage().startswith("No pretrained weights loaded")
