"""Every metric's statistic on hand-made tensors with a known answer."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.world.concepts import ObjectSpec
from benchmark.world.render import render_concepts
from benchmark.world.truth import WorldTruth, named_mask
from metrics.clip_score import clip_score
from metrics.detection import detection, precision_at_k
from metrics.functional import auroc, iou, pearson, spearman
from metrics.generation_auroc import generation_auroc, mean_activation_difference
from metrics.localization_iou import localization, localization_iou
from metrics.simulation import calibrated_correlation, simulation_records

RNG = np.random.default_rng(0)


def test_auroc_perfect_reversed_constant_shuffled_and_one_class():
    labels = np.arange(200) < 50
    assert auroc(labels.astype(float), labels) == 1.0
    assert auroc(-labels.astype(float), labels) == 0.0
    assert auroc(np.zeros(200), labels) == 0.5
    assert abs(auroc(RNG.normal(size=200), labels) - 0.5) < 0.12
    assert math.isnan(auroc(np.ones(5), np.ones(5, bool)))


def test_correlations_known_and_guarded():
    x = np.arange(10.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0) and spearman(x, x**3) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(pearson(np.ones(10), x)) and math.isnan(spearman(x, np.ones(10)))


def test_detection_perfect_constant_shuffled():
    active = np.arange(1000) < 100
    assert detection(active.astype(float), active, k=20, seed=0) == (1.0, 1.0, 1.0)
    area, accuracy, precision = detection(np.zeros(1000), active, k=20, seed=0)
    assert (area, accuracy) == (0.5, 0.5) and precision == pytest.approx(0.1)  # ties: the base rate
    area, accuracy, precision = detection(RNG.permutation(active).astype(float) + RNG.normal(0, 0.01, 1000), active, 20, 0)
    assert abs(area - 0.5) < 0.1 and abs(accuracy - 0.5) < 0.12
    assert all(math.isnan(v) for v in detection(np.zeros(10), np.zeros(10, bool), 5, 0))


def test_precision_at_k_counts_ties_at_their_rate():
    assert precision_at_k(np.array([3.0, 2, 2, 2, 0]), np.array([1, 1, 0, 0, 1], bool), k=2) == pytest.approx(1 / 2 + 1 / 6)


def test_calibrated_correlation_perfect_anti_constant():
    actual = RNG.uniform(0, 5, 100)
    fit = np.arange(100) % 2 == 0
    assert calibrated_correlation(0.3 * actual - 7, actual, fit) == pytest.approx((1.0, 1.0))
    assert calibrated_correlation(-actual, actual, fit) == (0.0, 0.0)  # no credit for predicting the opposite
    assert all(math.isnan(v) for v in calibrated_correlation(np.ones(100), actual, fit))
    r, _ = calibrated_correlation(RNG.normal(size=100), actual, fit)
    assert abs(r) < 0.3


def test_simulation_records_interleave_top_and_random():
    mean = np.arange(100.0)
    records = simulation_records(mean, 10, seed=0)
    assert list(records[0::2]) == list(range(99, 89, -1))
    assert len(set(records[1::2])) == 10 and max(records[1::2]) < 90
    small = simulation_records(np.arange(7.0), 50, seed=0)  # a pool smaller than 2 x 50: half each side
    assert list(small[0::2]) == [6, 5, 4] and len(set(small[1::2])) == 3 and set(small[1::2]) <= {0, 1, 2, 3}
    assert all(math.isnan(v) for v in calibrated_correlation(np.zeros(0), np.zeros(0), np.zeros(0, bool)))


def test_clip_score_is_the_mean_cosine():
    text = torch.tensor([1.0, 0.0])
    assert clip_score(text, torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == 0.5
    assert math.isnan(clip_score(text, torch.zeros(0, 2)))


def test_generation_auroc_separated_equal_and_reversed():
    assert generation_auroc(np.ones(8), np.zeros(30)) == 1.0
    assert generation_auroc(np.zeros(8), np.zeros(30)) == 0.5
    assert generation_auroc(np.zeros(8), np.ones(30)) == 0.0


def test_mad_is_the_mean_difference_in_control_standard_deviations():
    control = np.array([0.0, 2.0, 0.0, 2.0])  # mean 1, population std 1
    assert mean_activation_difference(np.array([4.0, 2.0]), control) == 2.0
    assert mean_activation_difference(np.array([0.0]), control) == -1.0
    assert math.isnan(mean_activation_difference(np.ones(3), np.zeros(5)))


def test_localization_iou_and_the_named_mask():
    active = np.array([[1, 1, 0, 0], [0, 1, 1, 0]], bool)
    named = np.array([[1, 0, 0, 0], [0, 1, 1, 0]], bool)
    assert localization_iou(active, named) == pytest.approx((0.5 + 1.0) / 2)
    assert localization(active, named) == pytest.approx(((0.5 + 1.0) / 2, 1.0, (0.5 + 1.0) / 2))
    wide = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool)  # image 2: nothing named, so no precision there
    assert localization(active, wide) == pytest.approx(((0.5 + 0.0) / 2, 0.5, (1.0 + 0.0) / 2))
    assert math.isnan(iou(np.zeros(4, bool), np.zeros(4, bool)))
    red = ObjectSpec("red", "plain", "circle", "large", "top left")
    blue = ObjectSpec("blue", "striped", "square", "small", "bottom right")
    masks_KP = np.array([[1, 1, 0, 0], [0, 0, 0, 1]], bool)
    quadrant = np.array([0, 1, 2, 3])
    assert named_mask((red, blue), masks_KP, {"red"}, quadrant).tolist() == [True, True, False, False]
    assert named_mask((red, blue), masks_KP, {"red", "blue"}, quadrant).tolist() == [True, True, False, True]  # either
    assert named_mask((red, blue), masks_KP, {"red", "top left"}, quadrant).tolist() == [True, False, False, False]
    assert named_mask((red, blue), masks_KP, {"square", "striped"}, quadrant).tolist() == [False, False, False, True]
    assert not named_mask((red, blue), masks_KP, set(), quadrant).any()


def test_oracle_names_by_word_or_synonym():
    truth = WorldTruth(pd.DataFrame({"feature": [0, 1, 2, 3], "concept": ["red", "circle", "top left", None],
                                     "category": ["colour", "shape", "position", None], "position_tag": [None] * 4}))
    assert truth.names("a crimson disk", 0) == 1.0 and truth.names("a crimson disk", 1) == 1.0
    assert truth.names("reddish", 0) == 0.0 and truth.names("upper left corner", 2) == 1.0
    assert math.isnan(truth.names("red", 3))
    assert truth.phrase(0) == "red" and truth.phrase(3) is None
    assert truth.rivals(1) == ["square", "triangle", "cross"]


def grey(images):
    return (images[..., 0] == images[..., 1]) & (images[..., 1] == images[..., 2])


def test_renderer_draws_what_a_phrase_names():
    images = render_concepts({"red", "top left"}, 16, 32, seed=1)
    for image in images:
        coloured = ~grey(image)
        assert coloured[:16, :16].sum() > 10 and not coloured[16:].any() and not coloured[:, 16:].any()
        r, g, b = image[coloured].astype(int).T
        assert ((r > 2 * g) & (r > 2 * b)).all()  # red, or its darker stripes
    striped = render_concepts({"striped", "large"}, 8, 32, seed=2)
    assert all(len(np.unique(img[~grey(img)].reshape(-1, 3), axis=0)) == 2 for img in striped)
    assert grey(render_concepts(set(), 4, 32, seed=3)).all()
