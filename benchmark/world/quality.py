"""How competent the built world is: caption recall per category, whether steering the empty
image by an aligned feature's decoder direction makes the VLM name that feature's concept, and
whether the top-k prompt over an aligned feature's masked top images does."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from transformers import LlavaForConditionalGeneration, PreTrainedTokenizerFast

from benchmark.models.sae import TopKSAE
from benchmark.steering import steered_generate
from benchmark.world.concepts import CATEGORIES, is_clean, names
from benchmark.world.pools import Pool
from benchmark.world.vlm import generate


def caption_recall(vlm: LlavaForConditionalGeneration, tokenizer: PreTrainedTokenizerFast, pool: Pool,
                   batch: int = 250) -> dict[str, float]:
    """Per category: of the concepts present in an image, the share its generated caption names."""
    hits = {c: [] for c in CATEGORIES}
    for start in range(0, len(pool), batch):
        captions = generate(vlm, tokenizer, pool.images_NHWC[start:start + batch, None])
        for text, objs in zip(captions, pool.objects[start:start + batch]):
            for obj in objs:
                for category, concept in obj.concepts().items():
                    hits[category].append(names(text, concept))
    return {c: float(np.mean(h)) for c, h in hits.items() if h}


def empty_image(size: int, kind: str = "white", seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: white, black, or uniform noise."""
    if kind == "white":
        return np.full((size, size, 3), 255, np.uint8)
    if kind == "black":
        return np.zeros((size, size, 3), np.uint8)
    if kind == "noise":
        return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    raise ValueError(f"unknown empty image {kind!r}; choose white, black or noise")


def steered_captions(vlm: LlavaForConditionalGeneration, tokenizer: PreTrainedTokenizerFast, layer: int,
                     vectors_BD: torch.Tensor) -> list[str]:
    """Describe-prompt answers for the white empty image, row b steered by vectors_BD[b] at every
    token of tower hidden state `layer`."""
    size = vlm.config.vision_config.image_size
    images = np.broadcast_to(empty_image(size), (len(vectors_BD), 1, size, size, 3))
    return steered_generate(lambda batch: generate(vlm, tokenizer, batch), vlm.model.vision_tower.encoder.layers[layer - 1],
                            images, vectors_BD)


def random_directions(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g)
    return v / v.norm(dim=1, keepdim=True)


def steering_sanity(vlm, tokenizer, sae: TopKSAE, layer: int, aligned: pd.DataFrame, scales: torch.Tensor,
                    multipliers: tuple[float, ...], seed: int) -> tuple[dict, float]:
    """The coefficient multiplier (times each feature's typical top activation) is chosen on the
    even-numbered aligned features by clean rate; the returned rates are on the odd-numbered ones.
    Returns ({category: {"feature", "clean", "random"}}, chosen multiplier)."""
    validation, test = aligned.iloc[0::2], aligned.iloc[1::2]
    features = lambda rows: torch.tensor(rows.feature.tolist(), dtype=torch.long)  # noqa: E731

    def run(rows: pd.DataFrame, m: float, directions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        coeffs = m * scales[features(rows)]
        texts = steered_captions(vlm, tokenizer, layer, coeffs[:, None] * directions)
        named = np.array([names(t, c) for t, c in zip(texts, rows.concept)])
        clean = np.array([is_clean(t, c) for t, c in zip(texts, rows.concept)])
        return named, clean

    clean_rate = {m: run(validation, m, sae.W_dec[features(validation)])[1].mean() for m in multipliers}
    best = max(multipliers, key=lambda m: (clean_rate[m], -m))
    named, clean = run(test, best, sae.W_dec[features(test)])
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


def topk_sanity(vlm: LlavaForConditionalGeneration, tokenizer: PreTrainedTokenizerFast, masked_BKHWC: np.ndarray,
                aligned: pd.DataFrame, batch: int = 64) -> dict[str, dict]:
    """`naming_rates` of the top-k prompt's answers, one row of masked top images per aligned feature."""
    texts = [t for start in range(0, len(masked_BKHWC), batch)
             for t in generate(vlm, tokenizer, masked_BKHWC[start:start + batch])]
    return naming_rates(texts, aligned)
