"""Training the world's scorer CLIP with open_clip (its own config and seed: it must not share
weights with the tower being explained). Texts mix full captions with partial descriptions, since
explanations are short phrases, not captions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.loss import ClipLoss
from tqdm import tqdm

from benchmark.models.scorer import Scorer
from benchmark.world.concepts import fragment
from benchmark.world.pools import Pool
from benchmark.world.training import adamw_with_schedule, batches

SCORER_NAME = "featurebench-world-scorer"


@dataclass(frozen=True)
class ScorerConfig:
    width: int = 96
    """Vision transformer width."""
    layers: int = 3
    """Vision transformer layers."""
    text_width: int = 64
    text_layers: int = 2
    embed_dim: int = 64
    steps: int = 400
    batch: int = 256
    lr: float = 2e-3
    seed: int = 1234
    """The scorer's own seed, distinct from the world's."""


def model_config(cfg: ScorerConfig, image_size: int, patch: int) -> dict:
    return {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {"image_size": image_size, "patch_size": patch, "width": cfg.width, "layers": cfg.layers,
                       "head_width": 32},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": cfg.text_width, "heads": 2,
                     "layers": cfg.text_layers},
    }


def training_text(objects, rng: np.random.Generator, full_caption: str) -> str:
    """Half the time the caption; otherwise a random non-empty part of one object's description."""
    if not objects or rng.random() < 0.5:
        return full_caption
    concepts = objects[rng.integers(len(objects))].concepts()
    keep = [c for c in concepts if rng.random() < 0.5] or [list(concepts)[rng.integers(len(concepts))]]
    return fragment({c: concepts[c] for c in keep})


def train_scorer(pool: Pool, cfg: ScorerConfig, patch: int, dpath: Path) -> Scorer:
    """Creates the scorer in `dpath` through open_clip's factory, trains it, saves its weights."""
    torch.manual_seed(cfg.seed)
    scorer = Scorer.create(dpath, SCORER_NAME, model_config(cfg, pool.images_NHWC.shape[1], patch))
    model, tokenizer = scorer.model, scorer.tokenizer
    model.train()
    loss_fn = ClipLoss()
    opt, sched = adamw_with_schedule(model.parameters(), cfg.lr, cfg.steps, weight_decay=0.05)
    rng = np.random.default_rng(cfg.seed)
    for idx in tqdm(batches(len(pool), cfg.batch, cfg.steps, rng), total=cfg.steps, desc="scorer (open_clip)"):
        texts = [training_text(pool.objects[i], rng, pool.captions[i]) for i in idx]
        out = model(scorer.pixels(pool.images_NHWC[idx]), tokenizer(texts))
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
    model.eval()
    scorer.save_weights(dpath)
    return scorer


def retrieval_top1(scorer: Scorer, pool: Pool, n: int = 1000) -> float:
    """Image-to-caption retrieval among `n` held-out images; a hit is any caption equal to the truth."""
    captions = pool.captions[:n]
    sims = scorer.encode_images(pool.images_NHWC[:n]) @ scorer.encode_texts(captions).T
    best = sims.argmax(1).numpy()
    return float(np.mean([captions[b] == captions[i] for i, b in enumerate(best)]))
