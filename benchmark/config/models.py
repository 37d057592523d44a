"""What a run explains, as a run config's tables name it: `[vlm]`, `[sae]`, `[scorer]`, `[pool]` and
`[prompts]`, read into one frozen `ModelsConfig`, plus the optional components `[generator]` and
`[segmenter]` (a `kind` and that kind's settings, checked when the source opens them:
`benchmark.sources.generators`, `benchmark.sources.segmenters`). Every field is documented under
it; a missing table or key, an unknown key or a value of the wrong type is one line naming it.

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
"""
from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from benchmark.config.fields import governed
from benchmark.registry import UsageError

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class VLMSpec:
    family: str
    """VLM family: llava, gemma3, internvl, or a plug-in adapter."""
    path: str
    """Checkpoint directory or hub id (loaded with from_pretrained, with its processor)."""
    name: str | None = None
    """The VLM's name in rows and run directories; None: `--lm`, else the checkpoint's last path part."""
    device: str | None = None
    """torch device; None: cuda when available, else cpu. In no cache key."""
    dtype: str | None = None
    """float32, bfloat16 or float16; None: bfloat16 on an accelerator, float32 on the CPU."""
    max_new_tokens: int = 50
    """Greedy tokens per answer (the paper: about 50), unless [prompts] sets one per prompt."""

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"[vlm] dtype {self.dtype!r}; choose {', '.join(DTYPES)}")
        if self.max_new_tokens < 1:
            raise UsageError(f"[vlm] max_new_tokens must be at least 1, not {self.max_new_tokens}")


@dataclass(frozen=True)
class SAESpec:
    path: str
    """An SAE in any format `python -m benchmark sae inspect` reads."""
    name: str | None = None
    """The SAE's name in rows and run directories; None: its file or directory name."""
    layer: int | None = None
    """Tower hidden state the SAE reads and steering writes, counted as transformers counts them (0: the
    embeddings; L: the output of block L - 1; LLaVA-1.5 reads 23 of CLIP-L's 24 blocks); None: derived
    from the SAE's files by their format's convention (`sae inspect` shows it: dictionary_learning's
    `layer` L is hidden state L + 1, SAELens' `blocks.N.hook_resid_post` is N + 1)."""
    random: int | None = None
    """A seed: explain a random SAE of the same kind, shape and sparsity instead of the one at `path`
    (`benchmark.models.sae.random_like`), the sanity control a trained SAE should beat; its source is
    named `<name>+random-sae-<seed>` (`random_sae_name`). None: the SAE at `path` itself."""

    def __post_init__(self):
        if self.random is not None and (isinstance(self.random, bool) or not isinstance(self.random, int)
                                        or self.random < 0):
            raise UsageError(f"[sae] random must be a seed, an integer >= 0, not {self.random!r}")


@dataclass(frozen=True)
class ScorerSpec:
    model: str = "ViT-L-14"
    """open_clip model name, or a scorer directory (`benchmark.models.scorer`)."""
    pretrained: str | None = "openai"
    """open_clip pretrained tag or a local checkpoint file (.pt, .bin, .safetensors); unused with a scorer directory."""


@dataclass(frozen=True)
class PoolSpec:
    PART: ClassVar[str] = "pool"
    """The protocol table that governs it (`benchmark.config.protocol`)."""

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
    """Share of the pool held out for scoring; the rest is the top-k pool. Unused with `scoring_source`."""
    scoring_source: str | None = None
    """A second pool, held out for scoring, read like `source` (same columns, no limit); `source` is
    then the top-k pool whole."""
    scoring_split: str | None = None
    """The scoring pool's split; None: `split`."""
    rank: str = "mean"
    """How a latent's top images are ranked: by its activation averaged over an image's patches
    (mean, the seed paper's) or by its largest on one patch (max)."""
    resize: str | None = governed(11)
    """How an image is brought to the tower's square input: crop (centre crop to a square, then
    resize) or whole (the whole image resized, its aspect ratio lost: the seed paper's); None: the
    run's protocol's."""

    def __post_init__(self):
        if self.rank not in ("mean", "max"):
            raise UsageError(f"[pool] rank {self.rank!r}; choose mean or max")
        if self.resize not in (None, *RESIZES):
            raise UsageError(f"[pool] resize {self.resize!r}; choose {' or '.join(RESIZES)}")
        if not 0 < self.scoring_fraction < 1:
            raise UsageError(f"[pool] scoring_fraction must lie strictly between 0 and 1, not {self.scoring_fraction}")
        if self.limit is not None and self.limit < 2:
            raise UsageError(f"[pool] limit must be at least 2 (a top-k and a scoring image), not {self.limit}")


@dataclass(frozen=True)
class VLMLoading:
    """How a source's VLM and SAE take their dtypes: settings of the run's protocol, not of the
    checkpoint, so not in [vlm]'s table nor in the source's identity; recorded in run.json."""

    PART: ClassVar[str] = "vlm"
    """The protocol table that governs it (`benchmark.config.protocol`)."""

    cast: str | None = governed(4)
    """How the VLM takes its dtype (`benchmark.models.adapters.base.CASTS`): as its loader loads it
    (load), or every floating parameter and buffer cast to it (whole: the seed paper's)."""
    sae_dtype: str | None = governed(11)
    """The dtype the SAE encodes the activation pass in: float32 (or the numeric contract's wider
    measuring dtype), or the model's (model: the seed paper's code casts its SAE with the model)."""


@dataclass(frozen=True)
class PromptSpec:
    """The questions and what is done to answers. A field left None takes the run's protocol's value
    (`benchmark.config.protocol`): the project's own wording, or the seed paper's verbatim."""

    PART: ClassVar[str] = "prompts"
    """The protocol table that governs it (`benchmark.config.protocol`)."""

    describe: str | None = governed(7)
    """Asked with one image (steering and its controls, caption-top1)."""
    shared: str | None = governed(8)
    """Asked with the top images (top-k, hybrid)."""
    answer_prefix: str | None = governed(9)
    """Words every answer is forced to begin with, never part of the explanation ("": none)."""
    remove: tuple[str, ...] | None = governed(9)
    """Strings removed from every answer, in order, before it is stripped (the seed paper's list)."""
    capitalize: bool | None = governed(9)
    """Whether the cleaned answer is capitalised as Python's `str.capitalize` does (the seed paper's code)."""
    describe_max_new_tokens: int | None = None
    """Greedy tokens per answer to `describe`; None: [vlm] max_new_tokens."""
    shared_max_new_tokens: int | None = None
    """Greedy tokens per answer to `shared`; None: [vlm] max_new_tokens."""


@dataclass(frozen=True)
class ModelsConfig:
    """The real models a run explains: the config file's [vlm], [sae], [scorer], [pool] and [prompts]."""

    vlm: VLMSpec
    sae: SAESpec
    pool: PoolSpec
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    prompts: PromptSpec = field(default_factory=PromptSpec)
    generator: dict | None = None
    """[generator]: `kind` (diffusers, or a plug-in) and its settings; None: no generator."""
    segmenter: dict | None = None
    """[segmenter]: `kind` (grounding-sam, clipseg, or a plug-in) and its settings; None: no segmenter."""

    @property
    def vlm_name(self) -> str:
        """The VLM's name in rows when `--lm` gives none: [vlm] name, else its checkpoint's last path
        part (llava-1.5-7b-hf)."""
        return self.vlm.name or Path(self.vlm.path).name

    @property
    def sae_name(self) -> str:
        """The source's name in rows: [sae] name, else the SAE's file or directory name; a
        dictionary_learning `trainer_N` (or its `ae.pt`) is named with its parent folder,
        `layer16-trainer_0`, since every such SAE lives in a `trainer_0`."""
        if self.sae.name:
            return self.sae.name
        path = Path(self.sae.path)
        if path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
            path = path.parent if path.stem == "ae" else path.with_suffix("")
        if re.fullmatch(r"trainer_\d+", path.name) and path.parent.name:
            return f"{path.parent.name}-{path.name}"
        return path.name

    def relative_to(self, base: Path) -> ModelsConfig:
        """The same models with each relative local path read from `base` (a run config's folder):
        a value naming a file or folder there becomes that absolute path; any other value (a hub id,
        an open_clip name, an absolute path) stays as written."""
        def at(value: str | None) -> str | None:
            if value is None or Path(value).expanduser().is_absolute() or not (base / value).exists():
                return value
            return str((base / value).resolve())

        return replace(self, vlm=replace(self.vlm, path=at(self.vlm.path)), sae=replace(self.sae, path=at(self.sae.path)),
                       pool=replace(self.pool, source=at(self.pool.source), scoring_source=at(self.pool.scoring_source)),
                       scorer=replace(self.scorer, model=at(self.scorer.model), pretrained=at(self.scorer.pretrained)),
                       **{name: _paths(getattr(self, name), at) for name in COMPONENTS})

    def resolved(self) -> ModelsConfig:
        """The same models with local paths made absolute, for processes in another directory (Ray
        workers). Cache identities are content fingerprints, so they do not change."""
        return replace(self, vlm=replace(self.vlm, path=_where(self.vlm.path)),
                       sae=replace(self.sae, path=_where(self.sae.path)),
                       pool=replace(self.pool, source=_where(self.pool.source),
                                    scoring_source=self.pool.scoring_source and _where(self.pool.scoring_source)),
                       scorer=replace(self.scorer, model=_where(self.scorer.model),
                                      pretrained=self.scorer.pretrained and _where(self.scorer.pretrained)),
                       **{name: _paths(getattr(self, name), _where) for name in COMPONENTS})


RANDOM_SAE_TAG = "+random-sae-"
"""What a random SAE's source name adds to the trained one's (`default@1+random-sae-0`): a name that
is also a file name (`leaderboards/rows/<source>-<lm>.csv.gz`), so no colon."""


def random_sae_name(name: str, seed: int) -> str:
    """The source name of a random SAE (seed `seed`) standing in for source `name`'s trained SAE."""
    return f"{name}{RANDOM_SAE_TAG}{seed}"


def trained_source_of(name: str) -> str | None:
    """The trained source a random SAE's source name stands in for (`default@1+random-sae-0 [seed]`
    -> `default@1 [seed]`), or None when `name` is no random SAE's. Findings pair the two by it."""
    match = re.fullmatch(rf"(.*){re.escape(RANDOM_SAE_TAG)}\d+(.*)", name)
    return match and match[1] + match[2]


def parse_random_sae(value: str) -> int:
    """The seed of `--sae random:<seed>`; anything else is a one-line UsageError (a trained SAE is
    named by the run config's [sae] table, not by this flag)."""
    kind, _, seed = value.partition(":")
    if kind != "random" or not seed.isdigit():
        raise UsageError(f"--sae {value!r}: expected random:<seed> (a random SAE of the trained one's kind and "
                         f"shape, e.g. random:0); a trained SAE is named in the run config's [sae] table")
    return int(seed)


RESIZES = ("crop", "whole")

TABLES = {"vlm": VLMSpec, "sae": SAESpec, "scorer": ScorerSpec, "pool": PoolSpec, "prompts": PromptSpec}
REQUIRED_TABLES = ("vlm", "sae", "pool")
COMPONENTS = ("generator", "segmenter")
ALL_TABLES = (*TABLES, *COMPONENTS)
"""Every table a run config may have besides its top-level options."""


def models_config(tables: dict, where: str) -> ModelsConfig:
    """The run config's model tables as a `ModelsConfig`; a missing table or key, an unknown key or a
    value of the wrong type is a one-line UsageError naming it."""
    missing = [f"[{t}]" for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise UsageError(f"{where}: real models need [vlm], [sae] and [pool]; missing {', '.join(missing)}")
    for name in COMPONENTS:
        table = tables.get(name)
        if table is not None and not (isinstance(table, dict) and isinstance(table.get("kind"), str)):
            raise UsageError(f"{where}: [{name}] must be a table with kind = \"...\"")
    return ModelsConfig(**{name: table if name in COMPONENTS else read_table(TABLES[name], table, f"{where}: [{name}]")
                           for name, table in tables.items()})


def _paths(table: dict | None, at) -> dict | None:
    """A component table with every string value (but `kind`) passed through `at` (paths made local
    to a folder, or absolute); names that are no local path stay as written."""
    if table is None:
        return None
    return {k: at(v) if isinstance(v, str) and k != "kind" else v for k, v in table.items()}


def read_table(cls: type, table, where: str):
    """A config table as the dataclass `cls`: every key one of its fields, every value of its type."""
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
    return cls(**{k: float(v) if hints[k] is float else tuple(v) if isinstance(v, list) else v
                  for k, v in table.items()})


def _fits(value, hint) -> bool:
    """Whether a config value is of a field's type (a list for a tuple field; an int for a float)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    for option in options:
        if typing.get_origin(option) is tuple:
            if isinstance(value, (list, tuple)) and all(_fits(v, typing.get_args(option)[0]) for v in value):
                return True
        elif isinstance(value, bool):
            if option is bool:
                return True
        elif isinstance(value, option) or (isinstance(value, int) and option is float):
            return True
    return False


def _where(path: str) -> str:
    """A local path made absolute; a hub id or name as is."""
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def to_toml(spec: ModelsConfig, top: dict[str, object]) -> str:
    """A run config file naming `spec`'s models, after the top-level `run` options in `top`; fields
    left at None are omitted (their defaults apply), so `models_config` reads back `spec`."""
    def line(key: str, value: object) -> str:  # a JSON string or number is a TOML one
        return f"{key} = {('true' if value else 'false') if isinstance(value, bool) else json.dumps(value)}"

    lines = [line(k.replace("_", "-"), v) for k, v in top.items() if v is not None]
    for name in TABLES:
        part = getattr(spec, name)
        lines += ["", f"[{name}]", *(line(f.name, getattr(part, f.name)) for f in fields(part)
                                     if getattr(part, f.name) is not None)]
    for name in COMPONENTS:
        if getattr(spec, name) is not None:
            lines += ["", f"[{name}]", *(line(k, v) for k, v in getattr(spec, name).items())]
    return "\n".join(lines) + "\n"
