"""Building the embedded world in cached stages, and the `World` handle that reads what was built.

The world is a small model zoo on disk plus ground truth. Its stages write ordinary artefacts: image
pools as `datasets` saved to disk, a LLaVA checkpoint per LM size written with `save_pretrained`
with its processor (image processor, word-level tokenizer and a chat template giving the world's
two prompts), the SAE in SAELens' layout, the scorer as a scorer directory, and a run config (TOML)
per LM size naming them. From `groundtruth` on, the world reads itself as any user's models are
read, through `benchmark.sources.Source`: ground truth is dissected from the source's own
activations, and the quality report asks the VLMs through the one steering engine.

Stages, each cached under a hash of its config and of the stages it depends on:
pools -> tower -> vlm-<size> (one per LM size), sae, scorer -> groundtruth -> quality -> configs.
An interrupted build resumes at the stage it stopped in. A shipped world (`benchmark.world.shipped`)
renders its pools and reads every trained stage from its committed files instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, CLIPVisionModel, LlavaProcessor

from benchmark.cache import cache_root, cached_stage
from benchmark.config.models import ModelsConfig, PoolSpec, PromptSpec, SAESpec, ScorerSpec, VLMSpec, to_toml
from benchmark.models.sae import fraction_of_variance_explained
from benchmark.registry import UsageError
from benchmark.sources.capabilities import Capabilities
from benchmark.sources.source import STEERING_MULTIPLIER, Source
from benchmark.world.groundtruth import ALIGNED_IOU, ALIGNED_PRECISION, concept_patch_masks, dissect
from benchmark.world.pools import SPLITS, Pool, content_hash, load_pool, make_pool, save_pool
from benchmark.world.presets import WorldConfig
from benchmark.world.quality import caption_recall, steering_sanity, topk_sanity
from benchmark.world.render import GENERATOR_VERSION
from benchmark.world.sae_training import train_sae
from benchmark.world.scorer_training import retrieval_top1, train_scorer
from benchmark.world.shipped import WorldChoice, choose, manifest_key, shipped_dir, verified
from benchmark.world.tokenizer import build_tokenizer
from benchmark.world.tower import train_tower
from benchmark.world.training import image_processor
from benchmark.world.truth import world_capabilities
from benchmark.world.vlm import (
    ANSWER_PREFIX,
    CHAT_TEMPLATE,
    DESCRIBE,
    MAX_IMAGES,
    MAX_NEW_TOKENS,
    SHARED,
    TRAINING_DATA_VERSION,
    TrainingExamples,
    build_vlm,
    tower_states,
    train_vlm,
)

VLM_FILES_VERSION = 2
"""Part of the VLM stages' key: 2 adds the chat template and the generation config to the checkpoint."""


@dataclass
class World:
    """Directories of a built world's stages, with loaders for what they hold."""

    config: WorldConfig
    root: Path
    name: str = ""
    """What its rows carry as `source`: `default@1` for a shipped version, the preset's name (or
    `name@seedN`) for one trained here."""
    spec: str = ""
    """How another process opens the same world (`benchmark.world.shipped.choose`)."""
    version: int | None = None
    """The shipped version read; None: trained on this machine."""
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

    def models_config(self, lm: str) -> ModelsConfig:
        """The world's files for one LM size, as a run config's tables name a user's models."""
        return ModelsConfig(
            vlm=VLMSpec(family="llava", path=str(self.dirs[f"vlm-{lm}"]), name=lm, device="cpu", dtype="float32"),
            sae=SAESpec(path=str(self.dirs["sae"]), name=self.name, layer=self.sae_layer),
            scorer=ScorerSpec(model=str(self.dirs["scorer"]), pretrained=None),
            pool=PoolSpec(source=str(self.dirs["pools"] / "topk"), scoring_source=str(self.dirs["pools"] / "scoring"),
                          label_column=None),
            prompts=PromptSpec(describe=DESCRIBE, shared=SHARED, answer_prefix=ANSWER_PREFIX, capitalize=False,
                               describe_max_new_tokens=MAX_NEW_TOKENS["describe"],
                               shared_max_new_tokens=MAX_NEW_TOKENS["shared"]))

    def source(self, lm: str, capabilities: Capabilities | None = None, protocol: str | None = None) -> Source:
        """The world's files for one LM size read as a `Source`, with the world's capabilities (ground
        truth, renderer, exact masks, concept words) once the groundtruth stage exists, under
        `protocol` (`benchmark.config.protocol`). The world's VLM was trained on its own two questions, its
        forced prefix and its lowercase words, so its run config gives those explicitly and every
        protocol keeps them."""
        if lm not in self.config.lms:
            raise UsageError(f"unknown LM size {lm!r}; this world has {', '.join(self.config.lms)}")
        if capabilities is None and "groundtruth" in self.dirs:
            capabilities = world_capabilities(self.groundtruth(), self.pool("scoring"), self.patch, self.pool("topk"))
        tuned = self.metas["quality"]["steering_multiplier"][lm] if "quality" in self.metas else STEERING_MULTIPLIER
        return Source(self.models_config(lm), lm, self.name, self.root, capabilities or Capabilities(),
                      float(tuned), recipe=("world", self.spec, lm, protocol), protocol=protocol)

    def pool_content(self) -> dict[str, str]:
        """Each split's content hash (`benchmark.world.pools.content_hash`), as its build recorded it."""
        return self.metas["pools"].get("content") or {split: content_hash(self.pool(split)) for split in SPLITS}

    def groundtruth(self) -> pd.DataFrame:
        return pd.read_csv(self.dirs["groundtruth"] / "groundtruth.csv")

    def run_configs(self) -> dict[str, Path]:
        """LM size -> the run config (TOML) naming that size's files."""
        return {lm: self.dirs["configs"] / config_name(self.name, lm) for lm in self.config.lms}

    def report(self) -> dict:
        """The quality report, in the JSON shape `world build --json` prints."""
        quality = self.metas["quality"]
        stage_seconds = {name: meta["seconds"] for name, meta in self.metas.items()}
        stage_seconds["total"] = round(sum(stage_seconds.values()), 2)
        return {
            "name": self.name,
            "shipped": self.version is not None,
            "build_seconds": stage_seconds,
            "caption_recall": quality["caption_recall"],
            "scorer_retrieval_top1": self.metas["scorer"]["retrieval_top1"],
            "sae_fve": self.metas["sae"]["fve"],
            "sae_alive_fraction": self.metas["sae"]["alive_fraction"],
            "aligned_features": self.metas["groundtruth"]["aligned_features"],
            "steering_sanity": quality["steering_sanity"],
            "steering_multiplier": quality["steering_multiplier"],
            "topk_sanity": quality["topk_sanity"],
            "run_configs": {lm: str(path) for lm, path in self.run_configs().items()},
        }


def build_world(preset: str | WorldConfig = "default", root: Path | None = None) -> World:
    """The world `preset` names (`benchmark.world.shipped.choose`: shipped, or trained here), each stage
    loaded from the cache or the shipped files, or built."""
    choice = choose(preset) if isinstance(preset, str) else WorldChoice(preset, None, preset.name, preset.name)
    cfg = choice.config
    root = root or cache_root()
    parent = root / "world"
    world = World(cfg, root, name=choice.name, spec=choice.spec, version=choice.version)
    keys: dict[str, str] = {}

    def stage(name: str, config: dict, build) -> None:
        world.dirs[name], world.metas[name] = cached_stage(parent, name, config, build)
        keys[name] = world.dirs[name].name

    pools_cfg = {"generator": GENERATOR_VERSION, "seed": cfg.seed, "image_size": cfg.image_size,
                 "sizes": {"train": cfg.n_train, "topk": cfg.n_topk, "scoring": cfg.n_scoring}}
    stage("pools", pools_cfg, lambda d: _build_pools(d, pools_cfg))
    if choice.version is not None:
        _read_shipped(world, shipped_dir(cfg.name, choice.version), pools_cfg, keys)
    else:
        _train(world, stage, keys)
    stage("configs", {"stages": keys, "name": world.name}, lambda d: _write_configs(d, world))
    return world


def _read_shipped(world: World, dpath: Path, pools_cfg: dict, keys: dict[str, str]) -> None:
    """Points the trained stages at a shipped version's files, after checking them against its
    manifest and checking that the pools rendered here are the ones it was built on."""
    manifest = verified(dpath)
    if manifest["pools"]["config"] != json.loads(json.dumps(pools_cfg)):
        raise UsageError(f"{dpath.name} was built on pools {manifest['pools']['config']}; this preset renders "
                         f"{pools_cfg}; use {world.config.name}@train")
    if world.pool_content() != manifest["pools"]["content"]:
        raise RuntimeError(f"the image pools rendered on this machine differ from those {dpath.name} was built on "
                           f"(renderer not bit-identical here); train the world here instead: "
                           f"--world {world.config.name}@train")
    for name in manifest["stages"]:
        world.dirs[name] = dpath / name
        world.metas[name] = json.loads((dpath / name / "meta.json").read_text())
        keys[name] = f"{manifest_key(dpath)}/{name}"


def _train(world: World, stage, keys: dict[str, str]) -> None:
    """Builds (or loads from the cache) the trained stages: tower, one VLM per LM size, SAE, scorer,
    ground truth, quality report."""
    cfg = world.config
    key = keys.__getitem__  # a stage's identity: its directory name
    train = _Lazy(lambda: world.pool("train"))
    scoring = _Lazy(lambda: world.pool("scoring"))

    stage("tower", {"pools": key("pools"), "tower": cfg.tower, "seed": cfg.seed},
          lambda d: _build_tower(d, cfg, train()))
    examples = _Lazy(lambda: TrainingExamples(world.tower(), world.tokenizer, train(), cfg.seed))
    for i, (size, lm) in enumerate(cfg.lms.items()):
        stage(f"vlm-{size}", {"tower": key("tower"), "lm": lm, "seed": cfg.seed + i, "data": TRAINING_DATA_VERSION,
                              "files": VLM_FILES_VERSION},
              lambda d, lm=lm, seed=cfg.seed + i, size=size: _build_vlm(d, world, lm, seed, size, examples()))
    stage("sae", {"tower": key("tower"), "sae": cfg.sae, "seed": cfg.seed},
          lambda d: _build_sae(d, cfg, world.tower(), train(), scoring()))
    stage("scorer", {"pools": key("pools"), "scorer": cfg.scorer},
          lambda d: _build_scorer(d, cfg, train(), scoring()))
    largest = list(cfg.lms)[-1]  # its source's activations are the ones the default run reads
    stage("groundtruth", {"vlm": key(f"vlm-{largest}"), "sae": key("sae"), "iou": ALIGNED_IOU,
                          "precision": ALIGNED_PRECISION},
          lambda d: _build_groundtruth(d, world.source(largest, Capabilities()), scoring(), world.patch))
    quality_cfg = {"vlms": [key(f"vlm-{s}") for s in cfg.lms], "groundtruth": key("groundtruth"),
                   "images": cfg.quality_images, "multipliers": cfg.steering_multipliers, "topk_images": MAX_IMAGES}
    stage("quality", quality_cfg, lambda d: _build_quality(world, scoring()))


def trained_stages(cfg: WorldConfig) -> tuple[str, ...]:
    """The stages a shipped version holds: everything trained or derived from trained models."""
    return ("tower", *(f"vlm-{size}" for size in cfg.lms), "sae", "scorer", "groundtruth", "quality")


class _Lazy:
    """Computes a value on first call only: a stage loaded from cache never pays for its inputs."""

    def __init__(self, make):
        self.make, self.value, self.done = make, None, False

    def __call__(self):
        if not self.done:
            self.value, self.done = self.make(), True
        return self.value


def _build_pools(dpath: Path, cfg: dict) -> dict:
    content = {}
    for i, split in enumerate(SPLITS):
        pool = make_pool(cfg["sizes"][split], cfg["image_size"], seed=cfg["seed"] * 100 + i)
        save_pool(pool, dpath / split)
        content[split] = content_hash(pool)
    return {"content": content}


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
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # greedy decoding stops at eos and pads
        setattr(vlm.generation_config, name, getattr(tokenizer, name))
    vlm.save_pretrained(dpath)
    LlavaProcessor(image_processor=image_processor(world.config.image_size), tokenizer=tokenizer,
                   patch_size=world.patch, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE).save_pretrained(dpath)
    return {"final_loss": round(loss, 4), "parameters": sum(p.numel() for p in vlm.parameters())}


def _build_sae(dpath: Path, cfg: WorldConfig, tower: CLIPVisionModel, train: Pool, scoring: Pool) -> dict:
    x = tower_states(tower, train.images_NHWC, cfg.sae.layer)
    sae = train_sae(x.reshape(-1, x.shape[-1]), cfg.sae, cfg.seed)
    sae.save(dpath, hidden_state=cfg.sae.layer)
    held = tower_states(tower, scoring.images_NHWC, cfg.sae.layer).reshape(-1, x.shape[-1])
    with torch.no_grad():
        acts = sae.encode(held)
        fve = fraction_of_variance_explained(held, sae.decode(acts))
    return {"fve": round(fve, 4), "alive_fraction": round(float((acts > 0).any(0).float().mean()), 4)}


def _build_scorer(dpath: Path, cfg: WorldConfig, train: Pool, scoring: Pool) -> dict:
    scorer = train_scorer(train, cfg.scorer, cfg.tower.patch, dpath)
    return {"retrieval_top1": round(retrieval_top1(scorer, scoring), 4)}


def _build_groundtruth(dpath: Path, source: Source, scoring: Pool, patch: int) -> dict:
    acts_NPF = source.activations("scoring").dense_NPF()
    table = dissect(acts_NPF, concept_patch_masks(scoring, patch))
    table.to_csv(dpath / "groundtruth.csv", index=False)
    counts = table[table.aligned].category.value_counts()
    return {"aligned_features": {c: int(counts.get(c, 0)) for c in ("colour", "texture", "shape", "size", "position")}}


def _build_quality(world: World, scoring: Pool) -> dict:
    cfg = world.config
    sample = scoring.subset(np.arange(min(cfg.quality_images, len(scoring))))
    recall, sanity, multiplier, topk = {}, {}, {}, {}
    for size in cfg.lms:
        source = world.source(size)
        recall[size] = caption_recall(source, sample)
        sanity[size], multiplier[size] = steering_sanity(source, cfg.steering_multipliers, seed=cfg.seed)
        topk[size] = topk_sanity(source, MAX_IMAGES)
    return {"caption_recall": recall, "steering_sanity": sanity, "steering_multiplier": multiplier,
            "topk_sanity": topk}


def config_name(world: str, lm: str) -> str:
    return f"{world}-{lm}.toml"


def _write_configs(dpath: Path, world: World) -> dict:
    """One run config per LM size naming the world's files, with its tuned steering multiplier."""
    for lm in world.config.lms:
        top = {"steering_multiplier": float(world.metas["quality"]["steering_multiplier"][lm])}
        (dpath / config_name(world.name, lm)).write_text(f"# the {world.name} world's {lm} VLM, read as real models\n"
                                        + to_toml(world.models_config(lm), top))
    return {}
