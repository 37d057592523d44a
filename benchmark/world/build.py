"""Building the embedded world in cached stages, and the `World` handle that loads what was built.

Stages, each cached under a hash of its config and of the stages it depends on:
pools -> tower -> vlm-<size> (one per LM size), sae -> groundtruth, scorer, and quality (the report
on caption recall and steering). An interrupted build resumes at the stage it stopped in.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, CLIPVisionModel, LlavaForConditionalGeneration, LlavaProcessor

from benchmark.activations import PoolActivations, cached_activations, compute_activations, masked_top_images
from benchmark.cache import cache_root, cached_stage
from benchmark.models.sae import TopKSAE, fraction_of_variance_explained
from benchmark.models.scorer import Scorer
from benchmark.world.groundtruth import ALIGNED_IOU, ALIGNED_PRECISION, concept_patch_masks, dissect
from benchmark.world.pools import SPLITS, Pool, load_pool, make_pool, save_pool
from benchmark.registry import WORLDS
from benchmark.world.presets import WorldConfig
from benchmark.world.render import GENERATOR_VERSION
from benchmark.world.quality import caption_recall, steering_sanity, topk_sanity
from benchmark.world.sae_training import train_sae
from benchmark.world.scorer_training import retrieval_top1, train_scorer
from benchmark.world.tokenizer import build_tokenizer
from benchmark.world.tower import train_tower
from benchmark.world.training import image_processor
from benchmark.world.vlm import (MAX_IMAGES, TRAINING_DATA_VERSION, TrainingExamples, build_vlm, tower_states,
                                 train_vlm)

TOP_ACTIVATIONS = 16  # a feature's steering scale: the mean of its top activations on held-out patches


@dataclass
class World:
    """Directories of a built world's stages, with loaders for what they hold."""

    config: WorldConfig
    root: Path
    dirs: dict[str, Path] = field(default_factory=dict)
    metas: dict[str, dict] = field(default_factory=dict)
    _pools: dict[str, Pool] = field(default_factory=dict, init=False, repr=False)

    @property
    def patch(self) -> int:
        return self.config.tower.patch

    @property
    def sae_layer(self) -> int:
        return self.config.sae.layer

    def pool(self, split: str) -> Pool:
        """Loaded once (about a second for the default world's 5,000 images), then shared."""
        if split not in self._pools:
            self._pools[split] = load_pool(self.dirs["pools"] / split)
        return self._pools[split]

    @cached_property
    def tokenizer(self):
        return AutoTokenizer.from_pretrained(self.dirs["tower"])

    def tower(self) -> CLIPVisionModel:
        return CLIPVisionModel.from_pretrained(self.dirs["tower"]).eval()

    def vlm(self, size: str) -> LlavaForConditionalGeneration:
        return LlavaForConditionalGeneration.from_pretrained(self.dirs[f"vlm-{size}"]).eval()

    def sae(self) -> TopKSAE:
        return TopKSAE.load(self.dirs["sae"])[0]

    def activations(self, split: str, compute: Callable[[], PoolActivations] | None = None) -> PoolActivations:
        """The SAE's activations over a pool, computed once and cached beside the world. `compute`
        (default: the whole pool in this process) lets a backend spread the pass over workers."""
        key = {"tower": self.dirs["tower"].name, "sae": self.dirs["sae"].name, "pools": self.dirs["pools"].name,
               "split": split}
        return cached_activations(self.root / "activations", key,
                                  compute or (lambda: self.activations_of(split, slice(None))))

    def activations_of(self, split: str, images: slice) -> PoolActivations:
        """Uncached activations of a slice of a pool's images: one shard of the activation pass."""
        tower = self.tower()
        return compute_activations(lambda batch: tower_states(tower, batch, self.sae_layer), self.sae(),
                                   self.pool(split).images_NHWC[images])

    def scorer(self) -> Scorer:
        return Scorer.load(self.dirs["scorer"])

    def groundtruth(self) -> pd.DataFrame:
        return pd.read_csv(self.dirs["groundtruth"] / "groundtruth.csv")

    def report(self) -> dict:
        """The quality report, in the JSON shape `world build --json` prints."""
        quality = self.metas["quality"]
        stage_seconds = {name: meta["seconds"] for name, meta in self.metas.items()}
        stage_seconds["total"] = round(sum(stage_seconds.values()), 2)
        return {
            "build_seconds": stage_seconds,
            "caption_recall": quality["caption_recall"],
            "scorer_retrieval_top1": self.metas["scorer"]["retrieval_top1"],
            "sae_fve": self.metas["sae"]["fve"],
            "sae_alive_fraction": self.metas["sae"]["alive_fraction"],
            "aligned_features": self.metas["groundtruth"]["aligned_features"],
            "steering_sanity": quality["steering_sanity"],
            "steering_multiplier": quality["steering_multiplier"],
            "topk_sanity": quality["topk_sanity"],
        }


def build_world(preset: str | WorldConfig = "default", root: Path | None = None) -> World:
    cfg = WORLDS.get(preset) if isinstance(preset, str) else preset
    root = root or cache_root()
    parent = root / "world"
    world = World(cfg, root)

    def stage(name: str, config: dict, build) -> None:
        world.dirs[name], world.metas[name] = cached_stage(parent, name, config, build)

    pools_cfg = {"generator": GENERATOR_VERSION, "seed": cfg.seed, "image_size": cfg.image_size,
                 "sizes": {"train": cfg.n_train, "topk": cfg.n_topk, "scoring": cfg.n_scoring}}
    stage("pools", pools_cfg, lambda d: _build_pools(d, pools_cfg))
    key = lambda name: world.dirs[name].name  # noqa: E731  (a stage's identity: its directory name)
    train = _Lazy(lambda: world.pool("train"))
    scoring = _Lazy(lambda: world.pool("scoring"))

    stage("tower", {"pools": key("pools"), "tower": cfg.tower, "seed": cfg.seed},
          lambda d: _build_tower(d, cfg, train()))
    examples = _Lazy(lambda: TrainingExamples(world.tower(), world.tokenizer, train(), cfg.seed))
    for i, (size, lm) in enumerate(cfg.lms.items()):
        stage(f"vlm-{size}", {"tower": key("tower"), "lm": lm, "seed": cfg.seed + i, "data": TRAINING_DATA_VERSION},
              lambda d, lm=lm, seed=cfg.seed + i, size=size: _build_vlm(d, world, lm, seed, size, examples()))
    stage("sae", {"tower": key("tower"), "sae": cfg.sae, "seed": cfg.seed},
          lambda d: _build_sae(d, cfg, world.tower(), train(), scoring()))
    stage("scorer", {"pools": key("pools"), "scorer": cfg.scorer},
          lambda d: _build_scorer(d, cfg, train(), scoring()))
    stage("groundtruth", {"sae": key("sae"), "iou": ALIGNED_IOU, "precision": ALIGNED_PRECISION},
          lambda d: _build_groundtruth(d, world, scoring()))
    quality_cfg = {"vlms": [key(f"vlm-{s}") for s in cfg.lms], "groundtruth": key("groundtruth"),
                   "images": cfg.quality_images, "multipliers": cfg.steering_multipliers, "topk_images": MAX_IMAGES}
    stage("quality", quality_cfg, lambda d: _build_quality(world, scoring()))
    return world


class _Lazy:
    """Computes a value on first call only: a stage loaded from cache never pays for its inputs."""

    def __init__(self, make):
        self.make, self.value, self.done = make, None, False

    def __call__(self):
        if not self.done:
            self.value, self.done = self.make(), True
        return self.value


def _build_pools(dpath: Path, cfg: dict) -> dict:
    for i, split in enumerate(SPLITS):
        save_pool(make_pool(cfg["sizes"][split], cfg["image_size"], seed=cfg["seed"] * 100 + i), dpath / split)
    return {}


def _build_tower(dpath: Path, cfg: WorldConfig, train: Pool) -> dict:
    # training pads and truncates captions, which a fast tokenizer remembers: save a pristine one
    tower, accuracy = train_tower(train, build_tokenizer(), cfg.tower, cfg.image_size, cfg.seed)
    tower.save_pretrained(dpath)
    build_tokenizer().save_pretrained(dpath)
    image_processor(cfg.image_size).save_pretrained(dpath)
    return {"contrastive_accuracy": round(accuracy, 4)}


def _build_vlm(dpath: Path, world: World, lm, seed: int, size: str, examples: TrainingExamples) -> dict:
    tokenizer = world.tokenizer
    vlm = build_vlm(world.tower(), tokenizer, lm, seed)
    vlm, loss = train_vlm(vlm, examples, lm, seed, size)
    vlm.save_pretrained(dpath)
    LlavaProcessor(image_processor=image_processor(world.config.image_size), tokenizer=tokenizer,
                   patch_size=world.patch, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1).save_pretrained(dpath)
    return {"final_loss": round(loss, 4), "parameters": sum(p.numel() for p in vlm.parameters())}


def _build_sae(dpath: Path, cfg: WorldConfig, tower: CLIPVisionModel, train: Pool, scoring: Pool) -> dict:
    x = tower_states(tower, train.images_NHWC, cfg.sae.layer)
    sae = train_sae(x.reshape(-1, x.shape[-1]), cfg.sae, cfg.seed)
    sae.save(dpath, hook_layer=cfg.sae.layer)
    held = tower_states(tower, scoring.images_NHWC, cfg.sae.layer).reshape(-1, x.shape[-1])
    with torch.no_grad():
        acts = sae.encode(held)
        fve = fraction_of_variance_explained(held, sae.decode(acts))
    return {"fve": round(fve, 4), "alive_fraction": round(float((acts > 0).any(0).float().mean()), 4)}


def _build_scorer(dpath: Path, cfg: WorldConfig, train: Pool, scoring: Pool) -> dict:
    scorer = train_scorer(train, cfg.scorer, cfg.tower.patch, dpath)
    return {"retrieval_top1": round(retrieval_top1(scorer, scoring), 4)}


def _build_groundtruth(dpath: Path, world: World, scoring: Pool) -> dict:
    acts_NPF = world.activations("scoring").dense()
    table = dissect(acts_NPF, concept_patch_masks(scoring, world.patch))
    flat = acts_NPF.reshape(-1, acts_NPF.shape[-1])
    table["scale"] = flat.topk(TOP_ACTIVATIONS, dim=0).values.mean(0).numpy()
    table.to_csv(dpath / "groundtruth.csv", index=False)
    counts = table[table.aligned].category.value_counts()
    return {"aligned_features": {c: int(counts.get(c, 0)) for c in ("colour", "texture", "shape", "size", "position")}}


def _build_quality(world: World, scoring: Pool) -> dict:
    cfg = world.config
    sample = scoring.subset(np.arange(min(cfg.quality_images, len(scoring))))
    table = world.groundtruth()
    aligned = table[table.aligned].reset_index(drop=True)
    sae = world.sae()
    scales = torch.tensor(table.scale.to_numpy(), dtype=torch.float32)
    acts = world.activations("topk")
    masked, _ = masked_top_images(world.pool("topk").images_NHWC, acts, acts.top_images(MAX_IMAGES),
                                  aligned.feature.tolist(), world.patch)
    recall, sanity, multiplier, topk = {}, {}, {}, {}
    for size in cfg.lms:
        vlm = world.vlm(size)
        recall[size] = caption_recall(vlm, world.tokenizer, sample)
        sanity[size], multiplier[size] = steering_sanity(vlm, world.tokenizer, sae, world.sae_layer, aligned, scales,
                                                         cfg.steering_multipliers, seed=cfg.seed)
        topk[size] = topk_sanity(vlm, world.tokenizer, masked, aligned)
    return {"caption_recall": recall, "steering_sanity": sanity, "steering_multiplier": multiplier,
            "topk_sanity": topk}
