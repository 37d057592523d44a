"""The vision tower: a tiny `transformers` CLIP trained contrastively on the world's captions, then
frozen and shared by every language-model size (as Gemma-3's sizes share one SigLIP)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast

from benchmark.world.pools import Pool
from benchmark.world.training import adamw_with_schedule, batches, pixel_values

TEXT_LENGTH = 20  # the longest caption (two objects) is 18 words, plus eos


@dataclass(frozen=True)
class TowerConfig:
    hidden: int = 128
    """Width of the vision transformer."""
    layers: int = 4
    """Number of vision transformer layers; the VLM reads the last, the SAE sits earlier."""
    patch: int = 8
    """Patch size in pixels."""
    steps: int = 500
    """Contrastive training steps."""
    batch: int = 256
    lr: float = 2e-3


def tower_vision_config(cfg: TowerConfig, image_size: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=cfg.hidden, intermediate_size=4 * cfg.hidden, num_hidden_layers=cfg.layers,
                            num_attention_heads=max(1, cfg.hidden // 32), image_size=image_size, patch_size=cfg.patch)


def tokenize_captions(tokenizer: PreTrainedTokenizerFast, captions: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer([f"{c} {tokenizer.eos_token}" for c in captions], padding="max_length", max_length=length,
                    truncation=True, return_tensors="pt", add_special_tokens=False)
    return enc.input_ids, enc.attention_mask


def train_tower(pool: Pool, tokenizer: PreTrainedTokenizerFast, cfg: TowerConfig, image_size: int,
                seed: int) -> tuple[CLIPVisionModel, float]:
    """Trains a CLIPModel with its own contrastive loss; returns the frozen vision half and the
    final in-batch image-to-text accuracy (a sanity figure for the report)."""
    torch.manual_seed(seed)
    vision = tower_vision_config(cfg, image_size)
    clip = CLIPModel(CLIPConfig(
        vision_config=vision.to_dict(), projection_dim=64,
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=TEXT_LENGTH, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)))
    ids, attn = tokenize_captions(tokenizer, pool.captions, TEXT_LENGTH)
    opt, sched = adamw_with_schedule(clip.parameters(), cfg.lr, cfg.steps, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    captions = np.array(pool.captions)
    accuracy = 0.0
    for idx in tqdm(batches(len(pool), cfg.batch, cfg.steps, rng), total=cfg.steps, desc="tower (contrastive)"):
        out = clip(input_ids=ids[idx], attention_mask=attn[idx], pixel_values=pixel_values(pool.images_NHWC[idx]),
                   return_loss=True)
        out.loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        caps = captions[idx]
        accuracy = 0.9 * accuracy + 0.1 * float((caps == caps[out.logits_per_image.argmax(1).numpy()]).mean())
    tower = CLIPVisionModel(vision)
    tower.load_state_dict(clip.vision_model.state_dict())
    return tower.eval().requires_grad_(False), accuracy
