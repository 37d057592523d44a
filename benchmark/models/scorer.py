"""The scorer: an open_clip CLIP that judges explanations by text-image similarity.

A scorer directory holds `<name>.json` (an open_clip model config) and `open_clip_model.safetensors`,
loaded through open_clip's own `add_model_config` + `create_model`, the path any open_clip
checkpoint takes. Embeddings come back L2-normalised.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

WEIGHTS = "open_clip_model.safetensors"


class Scorer:
    def __init__(self, model: torch.nn.Module, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        cfg = model.visual.preprocess_cfg
        self.mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)

    def pixels(self, images_NHWC: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(images_NHWC, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255  # copy: inputs may be read-only views
        return (x - self.mean) / self.std

    @torch.no_grad()
    def encode_images(self, images_NHWC: np.ndarray, batch: int = 512) -> torch.Tensor:
        out = [self.model.encode_image(self.pixels(images_NHWC[i:i + batch]), normalize=True)
               for i in range(0, len(images_NHWC), batch)]
        return torch.cat(out)

    @torch.no_grad()
    def encode_patches(self, images_NHWC: np.ndarray, batch: int = 512) -> torch.Tensor:
        """(N, P, D) patch tokens through the final norm and the image projection, L2-normalised: a
        text-patch similarity map in the manner of MaskCLIP, without training anything new."""
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
        return cls._from_dir(dpath, pretrained=None)

    @classmethod
    def load(cls, dpath: Path) -> "Scorer":
        return cls._from_dir(dpath, pretrained=str(dpath / WEIGHTS))

    @classmethod
    def _from_dir(cls, dpath: Path, pretrained: str | None) -> "Scorer":
        configs = [p for p in sorted(dpath.glob("*.json")) if "embed_dim" in json.loads(p.read_text())]
        if len(configs) != 1:
            raise FileNotFoundError(f"{dpath}: expected one open_clip model config (*.json with embed_dim), found {len(configs)}")
        config_fpath = configs[0]
        open_clip.add_model_config(config_fpath)
        name = config_fpath.stem
        model = open_clip.create_model(name, pretrained=pretrained, output_dict=True)
        return cls(model, open_clip.get_tokenizer(name), name)
