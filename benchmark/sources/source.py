"""Real models as a run's source: a VLM checkpoint, an SAE on one of its tower's hidden states, an
open_clip scorer and an image pool, read by `Context` and `ScoringContext` as they read the
embedded world. A run config names them in tables (fields below; `ModelsConfig`):

    [vlm]
    family = "llava"
    path = "llava-hf/llava-1.5-7b-hf"
    [sae]
    path = "saes/clip-l336-layer22"
    layer = 23
    [scorer]
    model = "ViT-L-14"
    pretrained = "openai"
    [pool]
    source = "data/imagenet-val"

What the world builds, this derives from the checkpoints:
- pools: one image pool at the tower's input size, split once by a seeded permutation into `topk`
  (the images methods show) and a held-out `scoring` part (what metrics read);
- activations per split: the steering engine's `tower_states` up to the SAE's hidden state, patch
  tokens only (CLS dropped through `token_patches()`), encoded by the SAE; cached;
- ground truth without concepts: only each feature's `scale`, the mean of its top activations over
  the scoring part's patches, as the world computes it;
- `dirs`: per role (tower, vlm-<lm>, sae, pools, scorer) a cache directory named by a hash of what
  identifies that role and holding it (`meta.json`), the counterpart of a world stage, so that
  explanation and score stores, the activation cache and run.json key real runs by these names as
  they key world runs. The `sae` identity includes the tower, layer and pool its activations (and so
  its top images and scales) come from; the `vlm` one the prompts and answer length.

Identity is by path, not content: a checkpoint changed in place at the same path is not noticed.
"""
from __future__ import annotations

import copy
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoConfig

from benchmark.activations import PoolActivations, cached_activations, compute_activations
from benchmark.cache import cache_root, cached_stage
from benchmark.engine import SteeringEngine
from benchmark.image_pools import ImagePool, load_image_pool, open_dataset, read_part, write_parts
from benchmark.models.adapters import ADAPTERS, load_vlm
from benchmark.models.adapters.base import VLMAdapter, default_dtype
from benchmark.models.sae import SAE
from benchmark.models.sae_formats import load_sae
from benchmark.models.scorer import Scorer
from benchmark.registry import UsageError
from benchmark.world.build import TOP_ACTIVATIONS

DESCRIBE = ("Describe in one sentence the highlighted element in this image: a low-level visual pattern or an "
            "abstract concept. Prefer the most general reading.")
SHARED = ("Each image shows one element; everything else is blacked out. In one sentence, name the one element "
          "shared by all images: a low-level visual pattern or an abstract concept.")
ANSWER_PREFIX = "The element is"
STEERING_MULTIPLIER = 8.0
"""Default steering coefficient in units of each feature's mean top activation: the value the
embedded world tunes to for every LM size. Tune it per model with `--tune`."""
DTYPES = ("float32", "bfloat16", "float16")
TOKENS_PER_BATCH = 2 ** 15
"""Tower tokens per batch of the activation pass (the SAE's dense pre-activations are that x d_sae)."""
GROUNDTRUTH_COLUMNS = ("concept", "category", "level", "aligned", "position_tag")
SPLIT_SEED = 0


@dataclass(frozen=True)
class VLMSpec:
    family: str
    """VLM family: llava, gemma3, internvl, or a plug-in adapter."""
    path: str
    """Checkpoint directory or hub id (loaded with from_pretrained, with its processor)."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu. In no cache key."""
    dtype: str | None = None
    """float32, bfloat16 or float16; None: bfloat16 on an accelerator, float32 on the CPU."""
    max_new_tokens: int = 50
    """Greedy tokens per answer (the paper: about 50)."""

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"[vlm] dtype {self.dtype!r}; choose {', '.join(DTYPES)}")
        if self.max_new_tokens < 1:
            raise UsageError(f"[vlm] max_new_tokens must be at least 1, not {self.max_new_tokens}")


@dataclass(frozen=True)
class SAESpec:
    path: str
    """An SAE in any format `python -m benchmark sae inspect` reads."""
    layer: int | None = None
    """Tower hidden state the SAE reads and steering writes, counted as transformers counts them (L: the
    output of block L - 1; LLaVA-1.5 reads 23 of CLIP-L's 24 blocks); None: the file's hook_layer, taken
    as that hidden state. SAELens' `blocks.N.hook_resid_post` is hidden state N + 1: set it here."""


@dataclass(frozen=True)
class ScorerSpec:
    model: str = "ViT-L-14"
    """open_clip model name, or a scorer directory (`benchmark.models.scorer`)."""
    pretrained: str | None = "openai"
    """open_clip pretrained tag or a local checkpoint file (.pt, .bin, .safetensors)."""


@dataclass(frozen=True)
class PoolSpec:
    source: str
    """A `save_to_disk` dataset directory, a folder of images, or a hub dataset name."""
    split: str = "train"
    """Dataset split."""
    image_column: str = "image"
    label_column: str | None = None
    """Kept with the images when set (e.g. a class name); nothing reads it yet."""
    limit: int | None = None
    """Use only the first `limit` images."""
    scoring_fraction: float = 0.2
    """Share of the pool held out for scoring; the rest is the top-k pool."""

    def __post_init__(self):
        if not 0 < self.scoring_fraction < 1:
            raise UsageError(f"[pool] scoring_fraction must lie strictly between 0 and 1, not {self.scoring_fraction}")
        if self.limit is not None and self.limit < 2:
            raise UsageError(f"[pool] limit must be at least 2 (a top-k and a scoring image), not {self.limit}")


@dataclass(frozen=True)
class PromptSpec:
    describe: str = DESCRIBE
    """Asked with one image (steering and its controls, caption-top1)."""
    shared: str = SHARED
    """Asked with several images (top-k, hybrid)."""
    answer_prefix: str = ANSWER_PREFIX
    """Words every answer is forced to begin with, never part of the explanation."""


@dataclass(frozen=True)
class ModelsConfig:
    """The real models a run explains: the config file's [vlm], [sae], [scorer], [pool] and [prompts]."""

    vlm: VLMSpec
    sae: SAESpec
    pool: PoolSpec
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    prompts: PromptSpec = field(default_factory=PromptSpec)

    @property
    def vlm_name(self) -> str:
        """The VLM's name in rows when `--lm` gives none: its checkpoint's last path part (llava-1.5-7b-hf)."""
        return Path(self.vlm.path).name

    @property
    def sae_name(self) -> str:
        """What rows record in the `world` column: the SAE's file or directory name."""
        path = Path(self.sae.path)
        return path.stem if path.suffix in (".safetensors", ".pt", ".pth", ".bin") else path.name

    def resolved(self) -> ModelsConfig:
        """The same models with local paths made absolute, for processes in another directory (Ray
        workers). Cache identities already use absolute paths, so they do not change."""
        return replace(self, vlm=replace(self.vlm, path=_where(self.vlm.path)),
                       sae=replace(self.sae, path=_where(self.sae.path)),
                       pool=replace(self.pool, source=_where(self.pool.source)),
                       scorer=replace(self.scorer, model=_where(self.scorer.model),
                                      pretrained=self.scorer.pretrained and _where(self.scorer.pretrained)))


TABLES = {"vlm": VLMSpec, "sae": SAESpec, "scorer": ScorerSpec, "pool": PoolSpec, "prompts": PromptSpec}
REQUIRED_TABLES = ("vlm", "sae", "pool")


def models_config(tables: dict, where: str) -> ModelsConfig:
    """The run config's model tables as a `ModelsConfig`; a missing table or key, an unknown key or a
    value of the wrong type is a one-line UsageError naming it."""
    missing = [f"[{t}]" for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise UsageError(f"{where}: real models need [vlm], [sae] and [pool]; missing {', '.join(missing)}")
    return ModelsConfig(**{name: _spec(TABLES[name], table, f"{where}: [{name}]") for name, table in tables.items()})


def _spec(cls: type, table, where: str):
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of keys, not {table!r}")
    table = {str(k).replace("-", "_"): v for k, v in table.items()}
    hints = typing.get_type_hints(cls)
    for key, value in table.items():
        if key not in hints:
            raise UsageError(f"{where}: unknown key {key!r}; keys: {', '.join(hints)}")
        if not _fits(value, hints[key]):
            raise UsageError(f"{where}: {key} = {value!r} is not a {hints[key]}")
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in table:
            raise UsageError(f"{where}: missing key {f.name!r}")
    return cls(**{k: float(v) if hints[k] is float else v for k, v in table.items()})


def _fits(value, hint) -> bool:
    types = typing.get_args(hint) or (hint,)
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) or (isinstance(value, int) and float in types)


class RealModels:
    """The `Models` of a run config's tables; `lm` is the VLM's name in rows and cache roles."""

    def __init__(self, spec: ModelsConfig, lm: str, root: Path | None = None):
        self.spec, self.lm = spec, lm
        self.root = root or cache_root()
        ADAPTERS.get(spec.vlm.family)  # an unknown family fails here, before anything loads
        self.device = spec.vlm.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, spec.vlm.dtype) if spec.vlm.dtype else default_dtype(self.device)
        self.image_size, self.patch, width = _tower_geometry(spec.vlm.path)
        self._sae, info = load_sae(spec.sae.path)
        if self._sae.d_in != width:
            raise UsageError(f"[sae] {spec.sae.path} reads {self._sae.d_in}-wide states; the {spec.vlm.path} tower is "
                             f"{width} wide")
        self.layer = spec.sae.layer if spec.sae.layer is not None else info.hook_layer
        if self.layer is None:
            raise UsageError(f"[sae] {spec.sae.path} does not say which hidden state it reads; set [sae] layer")
        pool = spec.pool
        tower = self._identity("tower", {"family": spec.vlm.family, "path": _where(spec.vlm.path),
                                         "dtype": str(self.dtype)})
        pools = self._identity("pools", {"fingerprint": open_dataset(pool.source, pool.split)._fingerprint,
                                         "image_column": pool.image_column, "label_column": pool.label_column,
                                         "limit": pool.limit, "size": self.image_size,
                                         "scoring_fraction": pool.scoring_fraction, "seed": SPLIT_SEED})
        scorer = spec.scorer.pretrained and _where(spec.scorer.pretrained)
        self.dirs = {
            "tower": tower,
            "pools": pools,
            "sae": self._identity("sae", {"path": _where(spec.sae.path), "layer": self.layer, "tower": tower.name,
                                          "pools": pools.name}),
            f"vlm-{lm}": self._identity("vlm", {"tower": tower.name, "prompts": asdict(spec.prompts),
                                                "max_new_tokens": spec.vlm.max_new_tokens}),
            "scorer": self._identity("scorer", {"model": _where(spec.scorer.model), "pretrained": scorer}),
        }

    def _identity(self, role: str, key: dict) -> Path:
        return cached_stage(self.root / "real", role, key, lambda dpath: {})[0]

    @cached_property
    def vlm(self) -> VLMAdapter:
        """Loaded on first use: a run served from the caches never loads it."""
        vlm = load_vlm(self.spec.vlm.family, self.spec.vlm.path, self.device, self.dtype)
        try:
            vlm.layer(self.layer)
        except ValueError as e:
            raise UsageError(f"[sae] layer {self.layer}: {e}") from None
        return vlm

    def sae(self) -> SAE:
        return self._sae

    def scorer(self) -> Scorer:
        return Scorer.open(self.spec.scorer.model, self.spec.scorer.pretrained)

    def speaker(self, lm: str) -> RealSpeaker:
        if lm != self.lm:
            raise UsageError(f"this run's VLM is named {self.lm!r}, not {lm!r}")
        return RealSpeaker(self)

    def pool(self, split: str) -> ImagePool:
        """The `topk` or `scoring` part of the pool, each in pool order."""
        if split not in self._splits:
            raise ValueError(f"real models have the splits topk and scoring, not {split!r}")
        return self._splits[split]

    @cached_property
    def _splits(self) -> dict[str, ImagePool]:
        """Both parts, split once by a seeded permutation and cached memory-mapped, each in pool order."""
        def build(dpath: Path) -> dict:
            p = self.spec.pool
            pool = load_image_pool(p.source, self.image_size, p.split, p.image_column, p.label_column, p.limit)
            n = len(pool.images_NHWC)
            if n < 2:
                raise UsageError(f"[pool] {p.source}: {n} image; a top-k and a scoring part need 2")
            order = np.random.default_rng(SPLIT_SEED).permutation(n)
            held = max(1, min(n - 1, round(n * p.scoring_fraction)))
            write_parts(pool, {"topk": np.sort(order[held:]), "scoring": np.sort(order[:held])}, dpath)
            return {}

        dpath, _ = cached_stage(self.root / "real", "splits", {"pools": self.dirs["pools"].name}, build)
        return {split: read_part(dpath, split) for split in ("topk", "scoring")}

    def activations(self, split: str, compute: Callable[[], PoolActivations] | None = None) -> PoolActivations:
        """The SAE's activations on a split's patch tokens, computed once and cached."""
        return cached_activations(self.root / "activations", {"sae": self.dirs["sae"].name, "split": split},
                                  compute or (lambda: self.activations_of(split, slice(None))))

    def activations_of(self, split: str, images: slice) -> PoolActivations:
        """Uncached activations of a slice of a split's images: one shard of the activation pass."""
        vlm = self.vlm
        engine = SteeringEngine(vlm, self.layer)
        patches_T = (vlm.token_patches()[:, 0] >= 0).to(vlm.device)
        sae = copy.deepcopy(self._sae).to(vlm.device)

        def states(images_NHWC: np.ndarray) -> torch.Tensor:
            return torch.cat(list(engine.tower_states(images_NHWC, len(images_NHWC))))[:, patches_T].float()

        batch = max(1, TOKENS_PER_BATCH // len(patches_T))
        acts = compute_activations(states, sae, self.pool(split).images_NHWC[images], batch=batch)
        return PoolActivations(acts.indices_NPK.cpu(), acts.values_NPK.cpu(), acts.d_sae)

    def groundtruth(self) -> pd.DataFrame:
        """Every ground-truth column empty; only `scale`, cached beside the activations."""
        def build(dpath: Path) -> dict:
            np.save(dpath / "scales.npy", top_activation_mean(self.activations("scoring"), TOP_ACTIVATIONS).numpy())
            return {}

        dpath, _ = cached_stage(self.root / "real", "scales", {"sae": self.dirs["sae"].name, "top": TOP_ACTIVATIONS},
                                build)
        scale = np.load(dpath / "scales.npy")
        empty = np.full(len(scale), np.nan)
        return pd.DataFrame({"feature": np.arange(len(scale)), **{c: empty for c in GROUNDTRUTH_COLUMNS},
                             "scale": scale})


class RealSpeaker:
    """The checkpoint's VLM answering through the steering engine with the config's prompts: rows
    that all show the same images (steering, its controls) share the tower prefix
    (`SteeringEngine.answer`); rows with their own images go through `answer_rows`."""

    def __init__(self, models: RealModels):
        self.models = models
        self.image_size = models.image_size
        self.default_multiplier = STEERING_MULTIPLIER

    @cached_property
    def token_patch_T(self) -> torch.Tensor:
        vlm = self.models.vlm
        rc_T2 = vlm.token_patches()
        return torch.where(rc_T2[:, 0] >= 0, rc_T2[:, 0] * vlm.grid[1] + rc_T2[:, 1], -1)

    def answer(self, images_BNHWC: np.ndarray, vectors_BD: torch.Tensor, positions_BNT: torch.Tensor | None,
               batch_size: int) -> list[str]:
        spec = self.models.spec
        engine = SteeringEngine(self.models.vlm, self.models.layer, batch_size)
        prompt = spec.prompts.describe if images_BNHWC.shape[1] == 1 else spec.prompts.shared
        tokens, prefix = spec.vlm.max_new_tokens, spec.prompts.answer_prefix
        if positions_BNT is None and all(np.array_equal(images_BNHWC[0], row) for row in images_BNHWC[1:]):
            return engine.answer(list(images_BNHWC[0]), prompt, vectors_BD, None, tokens, prefix)
        return engine.answer_rows(images_BNHWC, prompt, vectors_BD, positions_BNT, tokens, prefix)


def top_activation_mean(acts: PoolActivations, k: int) -> torch.Tensor:
    """(F,) each latent's k largest activations over all patch tokens, averaged; a latent active on
    fewer than k tokens counts zeros for the rest (the world's dense `topk(k).mean()`), without
    materialising the dense (tokens, F) matrix."""
    values, latents = acts.values_NPK.flatten(), acts.indices_NPK.flatten().long()
    order = values.argsort(descending=True, stable=True)
    values, latents = values[order], latents[order]
    order = latents.argsort(stable=True)  # by latent, each latent's values still largest first
    values, latents = values[order], latents[order]
    all_F = torch.arange(acts.d_sae)
    start_F, end_F = torch.searchsorted(latents, all_F), torch.searchsorted(latents, all_F, right=True)
    index_FK = start_F[:, None] + torch.arange(k)
    top_FK = torch.where(index_FK < end_F[:, None], values[index_FK.clamp(max=len(values) - 1)], 0.0)
    return top_FK.clamp(min=0).sum(1) / k


def _tower_geometry(path: str) -> tuple[int, int, int]:
    """(image side, patch side, width) of the checkpoint's vision tower, from its config alone."""
    try:
        vision = AutoConfig.from_pretrained(path).vision_config
    except (OSError, ValueError) as e:
        raise UsageError(f"[vlm] cannot read a config from {path}: {str(e).splitlines()[0]}") from None
    size, patch = (_side(getattr(vision, name), path) for name in ("image_size", "patch_size"))
    return size, patch, vision.hidden_size


def _side(value, path: str) -> int:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if pair[0] != pair[1]:
        raise UsageError(f"[vlm] {path}: a {pair[0]} x {pair[1]} tower input; square inputs only")
    return pair[0]


def _where(path: str) -> str:
    """A local path made absolute (so the same files key the same caches from any directory); a hub id or name as is."""
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path
