"""Protocols (`benchmark.config.protocol`): `protocol = "seed"` sets every item of the seed paper's protocol a
run can set (one row per item of PAPER_PROTOCOL.md below), explicit keys override it, and each item
the project computes has a known answer."""
from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.config.fields import ITEM, governed_fields
from benchmark.config.method import MethodConfig
from benchmark.config.models import PoolSpec, PromptSpec, VLMLoading
from benchmark.config.protocol import (
    FEATUREBENCH,
    PAPER_REMOVED,
    PAPER_STEERING_PROMPT,
    PAPER_TOPK_PROMPT,
    SEED,
    clean_answer,
)
from benchmark.config.resolve import require_resolved, resolve
from benchmark.config.run import RunConfig
from benchmark.config.scoring import ScoringConfig
from benchmark.pipeline import counted_features, run
from benchmark.registry import UsageError
from benchmark.scoring.context import sampled_ranks
from benchmark.scoring.stats import pooled_ci
from benchmark.sources.image_pools import to_square
from metrics.generation_auroc import pooled_auroc

GOVERNED = (PromptSpec, PoolSpec, VLMLoading, MethodConfig, ScoringConfig, RunConfig)
"""Every settings dataclass that holds governed fields; each declares its protocol table (`PART`)."""
PAPER_VALUES = [  # PAPER_PROTOCOL.md item, where the run holds it, field, the paper's value (read off its code)
    (4, "method", "direction", "row"),  # vector = coeff x decoder column as stored
    (4, "method", "vector_dtype", "model"),  # ... formed in bf16: its SAE is cast with the model
    (4, "vlm", "cast", "whole"),  # model.to(bfloat16) after loading, rotary buffers included
    (7, "prompts", "describe", PAPER_STEERING_PROMPT),
    (8, "prompts", "shared", PAPER_TOPK_PROMPT),
    (9, "prompts", "answer_prefix", ""),  # no forced prefix
    (9, "prompts", "remove", PAPER_REMOVED),
    (9, "prompts", "capitalize", True),
    (11, "pool", "resize", "whole"),  # the full image resized, no crop
    (11, "method", "firing_only", True),  # only images with mean activation > 0
    (11, "vlm", "sae_dtype", "model"),  # its top-k pass encodes with the SAE cast with the model
    (15, "run", "latents", "alive"),  # slices index the sorted alive latents
    (16, "scoring", "clip_images", "sampled"),
    (16, "scoring", "clip_from", 10),
    (16, "scoring", "clip_seed", 42),
    (17, "scoring", "generated_images", 3),
    (17, "scoring", "control_images", 3),
    (17, "scoring", "controls", "per-latent"),  # negatives seeded by the latent id
    (17, "scoring", "generation_prompt", "A realistic image of {}"),
    (17, "scoring", "generation_lowercase", True),  # "A realistic image of " + explanation.lower()
    (17, "scoring", "statistic", "pooled"),  # ONE AUROC over all latents
    (18, "scoring", "localization_images", 5),
    (18, "scoring", "localization_from", "sampled"),  # the 5 sampled top images
    (18, "scoring", "mask", "first"),
    (20, "method", "permute", "list"),  # the latent n/2 further along the evaluated list
]
NOT_A_PROTOCOL_SETTING = {  # items a run config sets (the shipped seed configs), or the same in both protocols
    1: "[sae] path / layer", 2: "[sae] path", 3: "steering code, both", 5: "steering-coeff / hybrid-coeff",
    6: "empty = white, both", 10: "adapters' chat template, both", 12: "top_images = masked, both",
    13: "--top-images viridis, both (an option; masked is both protocols' default)", 14: "hybrid, both",
    19: "pairwise.csv p_value, both",
}
UNSET = {"prompts": PromptSpec(), "pool": PoolSpec(source="pool"), "method": MethodConfig(), "scoring": ScoringConfig(),
         "run": RunConfig(), "vlm": VLMLoading()}
SETTINGS = {(cls.PART, name): f.metadata[ITEM] for cls in GOVERNED for name, f in governed_fields(cls).items()}
"""Every governed setting -> its PAPER_PROTOCOL.md item, read off the dataclasses' declarations."""


def test_every_item_is_a_governed_setting_or_named_as_none_and_every_protocol_sets_every_governed_field():
    assert sorted(set(SETTINGS.values()) | set(NOT_A_PROTOCOL_SETTING)) == list(range(1, 21))
    for p in (FEATUREBENCH, SEED):
        for part in {part for part, _ in SETTINGS}:
            assert set(getattr(p, part)) == {n for q, n in SETTINGS if q == part}, (p.name, part)


@pytest.mark.parametrize("item, part, name, value", PAPER_VALUES)
def test_seed_sets_the_papers_value(item, part, name, value):
    assert SETTINGS[part, name] == item
    assert getattr(resolve(UNSET[part], "seed"), name) == value
    assert getattr(resolve(UNSET[part], None), name) == FEATUREBENCH.__dict__[part][name]


def test_explicit_keys_override_the_protocol():
    mine = resolve(ScoringConfig(mask="union", generated_images=8), "seed")
    assert (mine.mask, mine.generated_images, mine.clip_images) == ("union", 8, "sampled")
    assert resolve(PromptSpec(answer_prefix="It is"), "seed").answer_prefix == "It is"
    with pytest.raises(UsageError, match="protocol 'paper'; choose featurebench, seed"):
        RunConfig(protocol="paper")


def test_a_run_resolves_its_method_and_scoring_settings_and_a_stage_refuses_unresolved_ones():
    run_config = resolve(RunConfig(protocol="seed"), "seed")
    assert (run_config.latents, run_config.method.permute, run_config.scoring.mask) == ("alive", "list", "first")
    require_resolved(run_config)
    with pytest.raises(ValueError, match=r"^MethodConfig: (\w+, )*permute(, \w+)* unset"):
        require_resolved(RunConfig(protocol="seed").method)


def test_every_governed_field_is_unset_until_resolved():
    for part, name in SETTINGS:
        assert getattr(UNSET[part], name) is None, (part, name)
    assert {f.name for f in fields(PromptSpec)} >= {"remove", "capitalize"}


@pytest.mark.parametrize("phrase", PAPER_REMOVED)
def test_each_listed_phrase_is_removed(phrase):
    assert clean_answer(f"{phrase}red ball ", PAPER_REMOVED, True) == "Red ball"


def test_clean_up_runs_the_papers_loop_replace_strip_capitalise_per_phrase():
    answer = "**Summary:** The highlighted element in the image is a Dog's EAR."
    assert clean_answer(answer, PAPER_REMOVED, True) == "Dog's ear."
    assert clean_answer(" " + answer, (), False) == answer
    # the first pass lowercases the rest, so a capitalised phrase later in the answer no longer matches
    late = "A dog. Here's a description of the highlighted element in the image: ears"
    assert clean_answer(late, PAPER_REMOVED, True) == "A dog. here's a description of the highlighted element in " \
                                                      "the image: ears"
    assert clean_answer("The highlighted element in the image is an owl", PAPER_REMOVED, True) == \
        "The highlighted element in the image is an owl"  # "a " only, as the list says


def test_seed_42_draws_five_of_the_top_ten_as_the_papers_feature_loader():
    assert sampled_ranks(5, 10, 42).tolist() == [5, 3, 7, 0, 4]  # the same ranks for every feature firing on 10
    assert sampled_ranks(5, 6, 42).tolist() == [2, 4, 3, 0, 5]  # a feature firing on 6 of its top 10
    assert len(sampled_ranks(5, 3, 42)) == 3 and set(sampled_ranks(5, 3, 42).tolist()) == {0, 1, 2}


def test_clip_score_reads_the_drawn_ranks_of_each_features_firing_images(world):
    from benchmark.scoring.context import ScoringContext

    ctx = ScoringContext(world.source("small", protocol="seed"), resolve(ScoringConfig(), "seed"))
    features = list(range(world.config.sae.d_sae))
    firing_F = (ctx.top.score_FK[:, :10] > 0).sum(1)
    ranks_BK = ctx.clip_ranks(features)
    for f in (int(np.flatnonzero(firing_F == 10)[0]), *np.flatnonzero((firing_F > 0) & (firing_F < 5))[:1].tolist()):
        n = int(firing_F[f])
        assert ranks_BK[f][ranks_BK[f] >= 0].tolist() == sampled_ranks(5, n, 42).tolist()
    shown = ScoringContext(world.source("small"), resolve(ScoringConfig(), None)).clip_ranks(features[:2])
    assert shown.tolist() == [[0, 1, 2, 3, 4]] * 2


def test_pooled_auroc_is_one_auroc_over_every_features_samples():
    samples = [(np.array([1.0, 2.0]), np.array([0.0, 3.0])), (np.array([5.0]), np.array([4.0]))]
    assert pooled_auroc(samples) == pytest.approx(5 / 9)  # 9 pairs; 1 > 0, 2 > 0, 5 > 0, 3, 4
    per_feature = np.mean([0.5, 1.0])
    assert per_feature == 0.75  # the mean of the features' own AUROCs is another number
    value, low, high = pooled_ci(samples, pooled_auroc)
    assert value == pytest.approx(5 / 9) and low <= value <= high


def test_alive_latent_slices_index_the_sorted_alive_list():
    alive = [3, 5, 9, 12]
    assert counted_features("1:3", 16, alive) == [5, 9]
    assert counted_features("0,3", 16, alive) == [3, 12]
    assert counted_features("1:3", 16, None) == [1, 2]
    with pytest.raises(UsageError, match="alive latents"):
        counted_features("0:5", 16, alive)


def test_whole_image_resize_keeps_the_edges_where_a_crop_drops_them():
    stripes = np.zeros((10, 30, 3), np.uint8)
    stripes[:, :10], stripes[:, 10:20], stripes[:, 20:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    image = Image.fromarray(stripes)
    whole, crop = to_square(image, 10, "whole"), to_square(image, 10, "crop")
    assert whole.shape == crop.shape == (10, 10, 3)
    assert tuple(whole[5, 0]) == (255, 0, 0) and tuple(whole[5, -1]) == (0, 0, 255)  # both ends survive
    assert (crop == (0, 255, 0)).all()  # the centre square: green only


def test_first_mask_is_the_first_named_object_union_all_of_them(world):
    from benchmark.world.truth import WorldSegmenter

    segmenter = WorldSegmenter(world.pool("scoring"), world.patch)
    scenes, masks_NKP = segmenter.pools("scoring")
    for i, objects in enumerate(scenes):  # an image with two objects of one shape
        shapes = [o.concepts()["shape"] for o in objects]
        twice = [s for s in set(shapes) if shapes.count(s) > 1]
        if twice:
            break
    else:
        pytest.skip("no scoring image with two objects of one shape")
    first, union = (segmenter.segment(twice[0], np.array([i]), mask=m)[0] for m in ("first", "union"))
    k = shapes.index(twice[0])
    assert first.sum() > 0 and (first & ~union).sum() == 0 and union.sum() > first.sum()
    assert (first == (masks_NKP[i][k] & union)).all()


def test_a_seed_run_records_its_protocol_and_computes_each_item(world, tmp_path):
    run_dir = run(RunConfig(methods=("steering", "topk", "hybrid", "permuted"), features="0:12", lm="small",
                            world="tiny", out=str(tmp_path), protocol="seed",
                            metrics="clip-score,generation-auroc,localization-iou"))
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["protocol"] == meta["source"]["protocol"] == meta["config"]["protocol"] == "seed"
    assert meta["config"]["latents"] == "alive"
    assert {k: meta["scoring_config"][k] for k in SEED.scoring} == SEED.scoring
    assert {k: meta["method_config"][k] for k in SEED.method} == SEED.method
    assert meta["source"]["cast"] == SEED.vlm["cast"] and meta["source"]["resize_filter"].endswith(":bicubic")
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    assert {r["protocol"] for r in rows} == {"seed"} and all("answer" in r for r in rows)
    top = world.source("small", protocol="seed").activations("topk")
    alive = np.flatnonzero(top.alive_F)[:12].tolist()
    assert sorted({r["feature"] for r in rows}) == alive  # the first 12 alive latents, not ids 0..11
    by = {(r["method"], r["feature"]): r["explanation"] for r in rows}
    assert all(by["permuted", f] == by["hybrid", alive[(i + 6) % 12]] for i, f in enumerate(alive))
    import pandas as pd

    scores = pd.read_csv(run_dir / "scores.csv")
    assert scores.generation_auroc_samples.notna().any()
    positives, negatives = json.loads(scores.generation_auroc_samples.dropna().iloc[0])
    assert len(positives) == len(negatives) == 3
    from benchmark.report import write_report

    report = write_report([run_dir], tmp_path / "report", None)  # the report names the protocol of every row
    written = "".join(f.read_text() for f in report.rglob("*") if f.suffix in (".html", ".js", ".json"))
    assert "steering [seed]" in written and "seed protocol" in written and ">seed<" in written


def test_seed_localization_segments_the_sampled_top_images(world):
    """Under the seed protocol localization reads the top-k pool images clip-score reads: feature f's
    IoU is the known-answer `localization` of its active patches there against the exact masks of
    the same top-k pool images."""
    from benchmark.scoring.context import ScoringContext
    from benchmark.world.truth import WorldSegmenter
    from metrics.localization_iou import localization, score_localization

    ctx = ScoringContext(world.source("small", protocol="seed"), resolve(ScoringConfig(), "seed"))
    f = int(np.flatnonzero((ctx.top.score_FK[:, :10] > 0).sum(1) == 10)[0])
    ids_BK, active_BKP = ctx.sampled_top([f])
    assert ids_BK[0].tolist() == ctx.top.ids([f], 10)[0][[5, 3, 7, 0, 4]].tolist()
    segmenter = WorldSegmenter(world.pool("scoring"), world.patch, world.pool("topk"))
    concept = world.groundtruth().set_index("feature").concept.get(f)
    text = concept if isinstance(concept, str) else "red"
    named = segmenter.segment(text, ids_BK[0].numpy(), mask="first", pool="topk")
    got = score_localization(ctx, [f], [text])
    assert got["localization_iou"][0] == pytest.approx(localization(active_BKP[0].numpy(), named)[0])
    assert np.isnan(score_localization(ctx, [f], [""])["localization_iou"][0])  # an empty explanation is left out


def test_the_papers_heatmap_option_is_viridis_bicubic_at_opacity_035():
    from matplotlib import colormaps

    from benchmark.activations.top_images import viridis

    grey = np.full((1, 2, 32, 32, 3), 100, np.uint8)  # 2 images of an 8 x 8 grid of 4 px patches
    acts_BKP = torch.zeros(1, 2, 64)
    acts_BKP[0, 1] = torch.tensor([0.0] * 4 + [5.0] * 4).repeat(8)  # image 2: left half off, right half 5
    shown = viridis(grey.copy(), acts_BKP, 4)
    low, high = (np.rint(0.65 * 100 + 0.35 * 255 * np.array(colormaps["viridis"](v)[:3])) for v in (0.0, 1.0))
    assert (shown[0, 0] == low).all()  # a flat map normalises to 0 everywhere
    assert (shown[0, 1, :, :8] == low).all() and (shown[0, 1, :, 24:] == high).all()  # min-max normalised
    middle = shown[0, 1, 16, 12:20, 1].astype(int)  # bicubic: a smooth step between, no nearest jump
    assert len(set(middle.tolist())) > 2 and (np.diff(middle) >= 0).all()


class UnionOnly:
    """A plug-in segmenter that declares no optional ability: the union of its masks on the scoring pool."""

    def segment(self, text: str, index_I: np.ndarray) -> np.ndarray:
        raise AssertionError("a refused run never segments")


@pytest.mark.parametrize("protocol_name, offers, refused", [("seed", (), "mask or pool"), ("seed", ("mask",), "pool"),
                                                            ("seed", ("mask", "pool"), None), (None, (), None)])
def test_a_segmenter_is_refused_up_front_for_what_it_does_not_declare(protocol_name, offers, refused):
    from types import SimpleNamespace

    from benchmark.pipeline import refuse_unoffered
    from benchmark.scoring.context import ScoringContext
    from benchmark.sources.capabilities import Capabilities
    from metrics import named_metrics

    localization_iou = named_metrics("localization-iou")[0]
    segmenter = type("Declared", (UnionOnly,), {"offers": offers})() if offers else UnionOnly()
    source = SimpleNamespace(capabilities=Capabilities(segmenter=segmenter), protocol=protocol_name)
    sctx = ScoringContext(source, resolve(ScoringConfig(), protocol_name))
    if refused is None:
        refuse_unoffered(sctx, [localization_iou])
        return
    with pytest.raises(UsageError, match=rf"the segmenter \w+ offers no {refused};"):
        refuse_unoffered(sctx, [localization_iou])


def test_a_segmenter_offering_an_unknown_ability_fails_as_it_registers():
    from benchmark.sources.segmenters import SEGMENTERS

    bad = type("Bad", (), {"settings": None, "check": None, "segment": None, "offers": ("masks",)})
    with pytest.raises(TypeError, match=r"offers \['masks'\]; a segmenter may offer mask, pool"):
        SEGMENTERS.register("bad-offers")(bad)
    assert "bad-offers" not in SEGMENTERS.names()
