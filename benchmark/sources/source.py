"""A run's source: what one run explains, read from files a user names, the same way for the
embedded world and for real checkpoints.

A source gives the VLM (through the adapter registry), the SAE on one of its tower's hidden states,
the two image pools (`topk`: what methods show; `scoring`: held out, what metrics read) and the
SAE's activations on them, the scorer, each feature's scale, and optional capabilities (ground
truth, a generator, a segmenter, a vocabulary: `benchmark.sources.capabilities`). The world is a
source like any other: `benchmark.sources.world` builds its files, then opens them here.

Identity is content. `identity` names each role by a fingerprint of its files
(`benchmark.identity.fingerprint`: names, sizes, headers and sampled bytes), plus the settings that
change what it computes (layer, dtype, columns, prompts). Every cache key (activations, scales,
explanations, scores) is built from these, never from a path, so a checkpoint or SAE rewritten in
place is recomputed. A hub id or dataset name stands for itself.

`[sae] random = <seed>` (`--sae random:<seed>`) replaces the SAE by a random one of its kind, shape
and sparsity (`benchmark.models.sae.random_like`), the sanity control: the source is then named
`<name>+random-sae-<seed>`, and its SAE identity is the trained SAE's files plus the seed.

Derived and cached:
- pools: read from their own files, decoded at the tower's input size when asked for; one pool is
  split by a seeded permutation into `topk` and `scoring`, or `[pool] scoring_source` names the
  scoring pool;
- activations per pool, in one streamed pass (`benchmark.activations.passes`): the steering engine's own
  tower pass up to the SAE's hidden state, patch tokens only (CLS dropped through
  `token_patches()`), encoded by the SAE exactly; the top-k pool keeps each latent's top images, the
  scoring pool every activation, by latent (`benchmark.activations.stores`);
- scales: each feature's mean top activation over the scoring pool's patches.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoConfig

from benchmark import numerics
from benchmark.activations.passes import TowerCodes, cached_store, write_store
from benchmark.activations.stores import TOP_KEPT, Codes
from benchmark.cache import cache_root, config_hash
from benchmark.config.models import ModelsConfig, VLMLoading, random_sae_name, trained_source_of
from benchmark.config.protocol import protocol as resolve_protocol
from benchmark.config.resolve import resolve
from benchmark.harness import path_identity
from benchmark.identity import code_identity
from benchmark.models.adapters import ADAPTERS, load_vlm
from benchmark.models.adapters.base import VLMAdapter, default_dtype
from benchmark.models.sae import SAE, random_like
from benchmark.models.sae_formats import load_sae
from benchmark.models.scorer import Scorer
from benchmark.registry import UsageError
from benchmark.sources.capabilities import GROUNDTRUTH_COLUMNS, NEEDS, Capabilities
from benchmark.sources.components import content as _content
from benchmark.sources.components import open_component
from benchmark.sources.image_pools import ImagePool, ProcessorResize, load_image_pool, open_dataset, processor_resize

STEERING_MULTIPLIER = 8.0
"""Default steering coefficient in units of each feature's mean top activation: the value the
embedded world tunes to for its largest LM. Tune it per model with `--tune`."""
SPLIT_SEED = 0


class Source:
    def __init__(self, spec: ModelsConfig, lm: str | None = None, name: str | None = None, root: Path | None = None,
                 capabilities: Capabilities = Capabilities(), default_multiplier: float = STEERING_MULTIPLIER,
                 recipe: tuple | None = None, protocol: str | None = None):
        """`lm`: the VLM's name in rows (default: its checkpoint's last path part); `name`: the
        source's (default: the SAE's file name); `recipe`: how another process opens the same source
        (`benchmark.sources.open_source`); `protocol`: whose values fill the prompts and pool
        settings the config left unset (`benchmark.config.protocol`; None: featurebench)."""
        self.protocol = resolve_protocol(protocol).name  # opening a source resolves its settings, once
        spec = replace(spec, prompts=resolve(spec.prompts, protocol), pool=resolve(spec.pool, protocol))
        self.loading = resolve(VLMLoading(), protocol)
        self.spec, self.lm, self.name = spec, lm or spec.vlm_name, name or spec.sae_name
        if spec.sae.random is not None and trained_source_of(self.name) is None:  # a recorded name has it already
            self.name = random_sae_name(self.name, spec.sae.random)
        self.root = root or cache_root()
        self.capabilities, self.default_multiplier = capabilities, default_multiplier
        self.recipe = recipe or ("models", spec.resolved(), self.lm, self.protocol)
        self.device = spec.vlm.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, spec.vlm.dtype) if spec.vlm.dtype else default_dtype(self.device)
        self.image_size, self.patch, width, blocks = _tower_geometry(spec.vlm.family, spec.vlm.path)
        self._sae, info = load_sae(spec.sae.path)
        if spec.sae.random is not None:  # the control: the trained SAE's kind and shape, random directions
            self._sae = random_like(self._sae, spec.sae.random)
        if self._sae.d_in != width:
            raise UsageError(f"[sae] {spec.sae.path} reads {self._sae.d_in}-wide states; the {spec.vlm.path} tower is "
                             f"{width} wide")
        self.layer = spec.sae.layer if spec.sae.layer is not None else info.hidden_state
        self.layer_from = f"[sae] layer {spec.sae.layer}" if spec.sae.layer is not None else info.hidden_state_from
        if self.layer is None:
            raise UsageError(f"[sae] {spec.sae.path} does not say which hidden state it reads ({info.hidden_state_from}); "
                             "set [sae] layer")
        if not 1 <= self.layer <= blocks:  # the exact bound (the state the projector reads) is checked on load
            raise UsageError(f"[sae] layer {self.layer}: the {spec.vlm.path} tower has {blocks} blocks, so hidden "
                             f"states 1..{blocks} (L = the output of block L - 1)")
        pool, scorer = spec.pool, spec.scorer
        self.identity = {
            "vlm": config_hash({"family": spec.vlm.family, "files": _content(spec.vlm.path), "dtype": self.dtype_name,
                                **({"cast": self.cast} if self.cast != "load" and self.dtype != torch.float32 else {})}),
            "sae": config_hash({"files": _content(spec.sae.path), "layer": self.layer,
                                **({"random": {"seed": spec.sae.random, "code": code_identity(random_like)}}
                                   if spec.sae.random is not None else {})}),
            "pools": config_hash({"files": _content(pool.source), "scoring": pool.scoring_source and
                                  _content(pool.scoring_source), **asdict(pool) | {"source": None, "scoring_source": None},
                                  "size": self.image_size, "seed": SPLIT_SEED,
                                  **({"filter": self.whole_resize.name} if pool.resize == "whole" else {})}),
            "scorer": config_hash({"model": _content(scorer.model), "pretrained": None if Path(scorer.model).is_dir()
                                   else scorer.pretrained and _content(scorer.pretrained)}),
            "prompts": config_hash({**asdict(spec.prompts), "max_new_tokens": spec.vlm.max_new_tokens}),
        }
        self.capabilities = replace(self.capabilities, **self._components())
        self.identity |= {name: self.capability_identity(name) for name in ("generator", "segmenter")
                          if getattr(spec, name) is not None}

    def _components(self) -> dict:
        """The generator and segmenter the config names (`[generator]`, `[segmenter]`), each checked
        against its files now (no weights read) and loaded on first use."""
        out = {}
        if self.spec.generator is not None:
            from benchmark.sources.generators import GENERATORS

            out["generator"] = open_component(GENERATORS, self.spec.generator, "[generator]",
                                              image_size=self.image_size, cache_dir=self.root / "generated")
        if self.spec.segmenter is not None:
            from benchmark.sources.segmenters import SEGMENTERS

            out["segmenter"] = open_component(SEGMENTERS, self.spec.segmenter, "[segmenter]",
                                              images=lambda index, pool="scoring": self.pool(pool).images(index),
                                              patch=self.patch,
                                              cache_dir=self.root / "segmentations")
        for component in out.values():
            component.check()
        return out

    def capability_identity(self, need: str) -> str:
        """What a score reading capability `need` depends on besides the source's models: a
        component's own identity (its files and settings), else its code's."""
        value = getattr(self.capabilities, need)
        if need == "vocabulary":
            return config_hash({"words": self.vocabulary()})
        return getattr(value, "identity", None) or code_identity(type(value))

    @property
    def source_id(self) -> str:
        """The content identity every row computed on this source carries (`source_id`): its VLM,
        SAE, pools, scorer, prompts and named components. Rows of one (source, LM) name share it, or
        they were computed on different models."""
        return config_hash(self.identity)

    @property
    def dtype_name(self) -> str:
        """The dtype the VLM runs in, as `[vlm] dtype` names it (what `identity` keys, not what was asked)."""
        return str(self.dtype).removeprefix("torch.")

    def has(self, need: str) -> bool:
        """Whether this source offers a capability (`benchmark.sources.capabilities.NEEDS`)."""
        if need not in NEEDS:
            raise ValueError(f"unknown capability {need!r}; capabilities: {', '.join(NEEDS)}")
        if need == "vocabulary" and self.spec.pool.label_column is not None:
            return True
        return getattr(self.capabilities, need) is not None

    def vocabulary(self) -> list[str]:
        """Words random explanations are drawn from: the source's own, else the top-k pool's label names."""
        if self.capabilities.vocabulary is not None:
            return list(self.capabilities.vocabulary)
        return sorted(set(self.pool("topk").labels or ()))

    @cached_property
    def vlm(self) -> VLMAdapter:
        """Loaded on first use: a run served from the caches never loads it. Cast as the protocol
        says (`cast`)."""
        vlm = load_vlm(self.spec.vlm.family, self.spec.vlm.path, self.device, self.dtype, self.cast)
        try:
            vlm.layer(self.layer)
        except ValueError as e:
            raise UsageError(f"[sae] layer {self.layer}: {e}") from None
        return vlm

    @property
    def cast(self) -> str:
        """How the VLM takes its dtype (`benchmark.models.adapters.base.CASTS`): the protocol's."""
        return self.loading.cast

    @cached_property
    def whole_resize(self) -> ProcessorResize:
        """How `[pool] resize = "whole"` resizes an image: the checkpoint's own image processor
        (`benchmark.sources.image_pools.ProcessorResize`), read without the weights."""
        return processor_resize(self.spec.vlm.path)

    def max_new_tokens(self, shared: bool) -> int:
        """Greedy tokens per answer to the shared (several images) or the describe prompt."""
        prompts = self.spec.prompts
        tokens = prompts.shared_max_new_tokens if shared else prompts.describe_max_new_tokens
        return tokens or self.spec.vlm.max_new_tokens

    def sae(self) -> SAE:
        return self._sae

    def scorer(self) -> Scorer:
        """The scorer, in the dtype measurements take (`benchmark.numerics`: it runs on the CPU)."""
        return Scorer.open(self.spec.scorer.model, self.spec.scorer.pretrained, numerics.measure_dtype("cpu", torch.float32))

    def check_scorer(self) -> None:
        """A one-line UsageError unless the scorer can be opened; reads no weights (`Scorer.check`)."""
        Scorer.check(self.spec.scorer.model, self.spec.scorer.pretrained)

    def pool(self, split: str) -> ImagePool:
        """The `topk` or `scoring` pool, each in its source's order."""
        if split not in ("topk", "scoring"):
            raise ValueError(f"a source has the pools topk and scoring, not {split!r}")
        return self._pools[split]

    @cached_property
    def _pools(self) -> dict[str, ImagePool]:
        """Read from the pool's own files; one pool is split by a seeded permutation of its rows."""
        p = self.spec.pool

        def read(source: str, limit: int | None, split: str) -> ImagePool:
            return load_image_pool(source, self.image_size, split, p.image_column, p.label_column, limit, p.resize,
                                   self.whole_resize if p.resize == "whole" else None)

        if p.scoring_source is not None:
            return {"topk": read(p.source, p.limit, p.split),
                    "scoring": read(p.scoring_source, None, p.scoring_split or p.split)}
        pool = read(p.source, p.limit, p.split)
        n = len(pool)
        if n < 2:
            raise UsageError(f"[pool] {p.source}: {n} image; a top-k and a scoring part need 2")
        order = np.random.default_rng(SPLIT_SEED).permutation(n)
        held = max(1, min(n - 1, round(n * p.scoring_fraction)))
        return {"topk": pool.part(np.sort(order[held:])), "scoring": pool.part(np.sort(order[:held]))}

    def pool_size(self, split: str) -> int:
        """Images in the `topk` or `scoring` pool, from the datasets' lengths alone: nothing is
        decoded or cached, so a run can check its pools before any compute."""
        p = self.spec.pool
        if p.scoring_source is not None:
            n = len(open_dataset(p.source, p.split, quiet=True) if split == "topk" else
                    open_dataset(p.scoring_source, p.scoring_split or p.split, quiet=True))
            return min(n, p.limit) if split == "topk" and p.limit else n
        n = len(open_dataset(p.source, p.split, quiet=True))
        n = min(n, p.limit) if p.limit else n
        if n < 2:
            raise UsageError(f"[pool] {p.source}: {n} image; a top-k and a scoring part need 2")
        held = max(1, min(n - 1, round(n * p.scoring_fraction)))
        return held if split == "scoring" else n - held

    def activations(self, split: str, batches: Callable[[], Iterable[tuple[int, Codes]]] | None = None,
                    keep: int = TOP_KEPT):
        """The SAE's activations on a pool's patch tokens, computed in one streamed pass (in this
        process, or from `batches`: a backend's sharded pass) and cached: the `topk` pool's best `keep`
        images per latent (`TopImages`), or every activation of the `scoring` pool (`ScoringActivations`)."""
        def build(dpath: Path) -> None:
            codes = batches() if batches is not None else self.codes_of(split)
            write_store(dpath, split, codes, self.pool_size(split), self.patches, self._sae.d_sae, keep,
                        self.spec.pool.rank)

        return cached_store(self.root / "activations", self.store_key(split, keep), split, build)

    def store_key(self, split: str, keep: int = TOP_KEPT) -> dict:
        """What a pool's activation store depends on: the tower, the SAE, the pool, the harness's
        activation path (`benchmark.harness`) and, for top images, how many are kept and how ranked."""
        return {"vlm": self.identity["vlm"], "sae": self.identity["sae"], "pools": self.identity["pools"], "split": split,
                "harness": path_identity("activations", self.spec.vlm.family),
                "numerics": numerics.describe(self.device, self.dtype), "sae_dtype": self.sae_dtype,
                **({"keep": keep, "rank": self.spec.pool.rank} if split == "topk" else {})}

    def codes_of(self, split: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, Codes]]:
        """The SAE's codes on pool images [start, stop), batch by batch: (a shard of) the activation pass."""
        return self.tower_codes.of_pool(self.pool(split), start, stop)

    @cached_property
    def tower_codes(self) -> TowerCodes:
        """The activation pass, on a copy of the VLM cast whole to the dtype measurements take
        (`benchmark.numerics`: float64 on a CPU), or on the VLM itself where that is its own dtype."""
        vlm = self.vlm
        if self.measure_dtype != self.dtype:
            vlm = load_vlm(self.spec.vlm.family, self.spec.vlm.path, self.device, self.measure_dtype, "whole")
        return TowerCodes(vlm, self.layer, self._sae, self.sae_dtype)

    @property
    def sae_dtype(self) -> str:
        """The dtype the SAE encodes the activation pass in (`benchmark.config.protocol`, `vlm.sae_dtype`)."""
        return self.loading.sae_dtype

    @property
    def measure_dtype(self) -> torch.dtype:
        """The dtype of the activation pass (`benchmark.numerics`)."""
        return numerics.measure_dtype(self.device, self.dtype)

    @cached_property
    def patches(self) -> int:
        """Patch tokens per image on the tower's grid (what the activations are stored on)."""
        return (self.image_size // self.patch) ** 2

    def image_activations(self, images_NHWC: np.ndarray) -> torch.Tensor:
        """(N, F) the SAE's activations on new images (a generator's), averaged over patches."""
        return self.tower_codes.image_means(images_NHWC)

    def scales(self, batches: Callable[[], Iterable[tuple[int, Codes]]] | None = None) -> np.ndarray:
        """(F,) each feature's mean top activation on the scoring pool: the unit of steering
        coefficients. `batches`: how to get the scoring activations if they are not cached."""
        return self.activations("scoring", batches).scales_F

    def groundtruth(self) -> pd.DataFrame:
        """One row per feature with `GROUNDTRUTH_COLUMNS`: the ground truth's, or all NaN without one."""
        if self.capabilities.groundtruth is not None:
            return self.capabilities.groundtruth.table()
        empty = np.full(self._sae.d_sae, np.nan)
        return pd.DataFrame({"feature": np.arange(self._sae.d_sae), **{c: empty for c in GROUNDTRUTH_COLUMNS}})

    def describe(self) -> dict:
        """What run.json records of the source: its name, identities, files, layer and how it was derived."""
        models = asdict(self.spec.resolved())
        models["vlm"]["dtype"] = self.dtype_name  # what ran, so the identity can be checked on another machine
        models["sae"]["layer"] = self.layer  # the state steered, however it was derived
        return {"name": self.name, "lm": self.lm, "protocol": self.protocol, "source_id": self.source_id,
                "identity": self.identity,
                "layer": self.layer,
                "layer_from": self.layer_from,
                "models": models, "default_steering_multiplier": self.default_multiplier,
                "cast": self.cast,  # the protocol's, beside models: run.json's models are read back as tables
                "resize_filter": self.whole_resize.name if self.spec.pool.resize == "whole" else "bicubic",
                "numerics": numerics.describe(self.device, self.dtype),
                "capabilities": [n for n in NEEDS if self.has(n)],
                **({"random_sae": self.random_sae()} if self.spec.sae.random is not None else {})}

    def random_sae(self) -> dict:
        """What run.json records of a random SAE (`[sae] random`): its seed, the trained SAE it stands
        in for (name and files), and the kind and sparsity it kept."""
        return {"seed": self.spec.sae.random, "replaces": trained_source_of(self.name), "trained_sae": self.spec.sae.path,
                "trained_sae_files": _content(self.spec.sae.path), "architecture": self._sae.architecture,
                "k": self._sae.k, "d_in": self._sae.d_in, "d_sae": self._sae.d_sae}


def open_models(spec: ModelsConfig, lm: str | None = None, protocol: str | None = None) -> Source:
    """The real models a run config names, as the `models` recipe kind opens them."""
    return Source(spec, lm, protocol=protocol)


def _tower_geometry(family: str, path: str) -> tuple[int, int, int, int]:
    """(image side, patch side, width, blocks) of the checkpoint's vision tower, from its config alone, once
    the config is known to be one of the family's (an unknown family fails first, before anything loads)."""
    adapter = ADAPTERS.get(family)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"[vlm] cannot read a config from {path}: {str(e).splitlines()[0]}") from None
    expected = adapter.model_class.config_class.model_type
    if config.model_type != expected:
        fits = [name for name in ADAPTERS.names() if ADAPTERS.get(name).model_class.config_class.model_type
                == config.model_type]
        raise UsageError(f"[vlm] family {family!r} reads {expected} checkpoints, but {path} is a {config.model_type} "
                         f"checkpoint; " + (f"set family = {fits[0]!r}" if fits else "no registered family reads it"))
    vision = config.vision_config
    size, patch = (_side(getattr(vision, name), path) for name in ("image_size", "patch_size"))
    return size, patch, vision.hidden_size, vision.num_hidden_layers


def _side(value, path: str) -> int:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if pair[0] != pair[1]:
        raise UsageError(f"[vlm] {path}: a {pair[0]} x {pair[1]} tower input; square inputs only")
    return pair[0]
