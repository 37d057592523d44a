"""How competent the built world is, asked as any run asks it (a `Context` over the world's source,
the one steering engine): caption recall per category, whether steering the empty image by an
aligned feature's decoder direction makes the VLM name that feature's concept, and whether the
top-k prompt over an aligned feature's masked top images does."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from benchmark.config.method import MethodConfig
from benchmark.config.resolve import resolve
from benchmark.explaining.context import Context
from benchmark.sources.source import Source
from benchmark.steering.inputs import random_directions
from benchmark.world.concepts import CATEGORIES, is_clean, names
from benchmark.world.pools import Pool


def caption_recall(source: Source, pool: Pool, batch: int = 250) -> dict[str, float]:
    """Per category: of the concepts present in an image, the share its generated caption names."""
    ctx = Context(source, resolve(MethodConfig(batch_size=batch), source.protocol))
    captions = ctx.answer(pool.images_NHWC[:, None])
    hits = {c: [] for c in CATEGORIES}
    for text, objs in zip(captions, pool.objects):
        for obj in objs:
            for category, concept in obj.concepts().items():
                hits[category].append(names(text, concept))
    return {c: float(np.mean(h)) for c, h in hits.items() if h}


def steering_sanity(source: Source, multipliers: tuple[float, ...], seed: int) -> tuple[dict, float]:
    """The coefficient multiplier (times each feature's typical top activation) is chosen on the
    even-numbered aligned features by clean rate; the returned rates are on the odd-numbered ones.
    Returns ({category: {"feature", "clean", "random"}}, chosen multiplier)."""
    table = source.groundtruth()
    aligned = table[table.aligned.astype(bool)].reset_index(drop=True)
    validation, test = aligned.iloc[0::2], aligned.iloc[1::2]
    ctx = Context(source, resolve(MethodConfig(), source.protocol))
    sae = ctx.sae

    def run(rows: pd.DataFrame, m: float, directions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        features = rows.feature.tolist()
        texts = ctx.answer(ctx.empty_images(len(features)), (m * ctx.scales(features))[:, None] * directions)
        named = np.array([names(t, c) for t, c in zip(texts, rows.concept)])
        clean = np.array([is_clean(t, c) for t, c in zip(texts, rows.concept)])
        return named, clean

    clean_rate = {m: run(validation, m, sae.W_dec[validation.feature.tolist()])[1].mean() for m in multipliers}
    best = max(multipliers, key=lambda m: (clean_rate[m], -m))
    named, clean = run(test, best, sae.W_dec[test.feature.tolist()])
    random_named, _ = run(test, best, random_directions(len(test), sae.d_in, seed))
    report = {}
    for category in CATEGORIES:
        rows = (test.category == category).to_numpy()
        if rows.any():
            report[category] = {"feature": float(named[rows].mean()), "clean": float(clean[rows].mean()),
                                "random": float(random_named[rows].mean()), "n": int(rows.sum())}
    return report, best


def naming_rates(texts: list[str], aligned: pd.DataFrame) -> dict[str, dict]:
    """Per category of the aligned features (rows in `texts` order): the share of answers naming the
    feature's concept, and the share answering 'nothing' (what the world's VLM says when the masked
    images show no object: a feature that fires on the background of images with its concept)."""
    named = np.array([names(t, c) for t, c in zip(texts, aligned.concept)])
    nothing = np.array([t.strip() == "nothing" for t in texts])
    report = {}
    for category in CATEGORIES:
        rows = (aligned.category == category).to_numpy()
        if rows.any():
            report[category] = {"named": float(named[rows].mean()), "nothing": float(nothing[rows].mean()),
                                "n": int(rows.sum())}
    return report


def topk_sanity(source: Source, k: int) -> dict[str, dict]:
    """`naming_rates` of the top-k prompt's answers, one row of k masked top images per aligned feature."""
    table = source.groundtruth()
    aligned = table[table.aligned.astype(bool)].reset_index(drop=True)
    ctx = Context(source, resolve(MethodConfig(top_k=k, batch_size=64), source.protocol))
    images, _ = ctx.shown_top_images(aligned.feature.tolist())
    return naming_rates(ctx.answer(images), aligned)
