"""The tiny world, built once per session: each model and table checked against a known answer."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from benchmark.cache import cached_stage
from benchmark.cli import main
from benchmark.models.sae import fraction_of_variance_explained
from benchmark.models.sae_formats import load_sae
from benchmark.models.scorer import Scorer
from benchmark.steering.hook import steer
from benchmark.world.groundtruth import concept_patch_masks, dissect
from benchmark.world.quality import naming_rates
from benchmark.world.training import pixel_values
from benchmark.world.vlm import (
    ANSWER_PREFIX,
    DESCRIBE,
    SHARED,
    mask_to_patches,
    prompt,
    shared_answer,
    thinned,
    tower_states,
    view_masks,
    vlm_logits,
)


def test_captioner_beats_chance_on_held_out_images(world):
    recall = world.report()["caption_recall"]
    largest = recall[list(world.config.lms)[-1]]
    assert largest["colour"] > 0.5  # chance: 1/6 per object
    assert largest["size"] > 0.65  # chance: 1/2


def test_sae_reconstruction_beats_the_mean_baseline(world):
    report = world.report()
    assert report["sae_fve"] > 0.6 and report["sae_alive_fraction"] > 0.3
    x = torch.randn(100, 8)
    assert fraction_of_variance_explained(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-6)
    assert fraction_of_variance_explained(x, x) == pytest.approx(1.0)


def test_sae_decoder_rows_are_unit_norm_and_round_trip(world, tmp_path):
    sae = world.source("small").sae()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.d_sae), atol=1e-5)
    sae.save(tmp_path / "sae")
    again, info = load_sae(tmp_path / "sae")
    x = torch.randn(5, sae.d_in)
    assert info.k == sae.k and torch.equal(again.encode(x), sae.encode(x))
    assert ((sae.encode(x) > 0).sum(1) <= sae.k).all()


def test_planted_red_feature_is_labelled_red(world):
    pool = world.pool("scoring")
    masks = concept_patch_masks(pool, world.patch)
    red = torch.from_numpy(masks["red"]).float()  # fires exactly on patches that show red
    striped_top_left = torch.from_numpy(masks["striped"] & (np.arange(16) == 0)).float()
    acts = torch.stack([red * 3.0, striped_top_left, torch.zeros_like(red)], dim=-1)
    table = dissect(acts, masks)
    assert table.loc[0, "concept"] == "red" and table.loc[0, "region"] == "all"
    assert table.loc[0, "iou"] == pytest.approx(1.0) and table.loc[0, "precision"] == pytest.approx(1.0)
    assert table.loc[0, "category"] == "colour" and bool(table.loc[0, "aligned"])
    assert table.loc[1, "concept"] == "striped" and table.loc[1, "position_tag"] == "top left"
    assert pd.isna(table.loc[2, "concept"]) and not table.loc[2, "aligned"]


def test_groundtruth_table_is_exported(world):
    table = world.groundtruth()
    assert len(table) == world.config.sae.d_sae
    assert {"feature", "concept", "category", "iou", "precision", "position_tag", "aligned"} <= set(table.columns)


def test_vlm_save_and_load_give_identical_outputs(world, tmp_path):
    vlm = world.source("small").vlm.model
    vlm.save_pretrained(tmp_path / "vlm")
    again = LlavaForConditionalGeneration.from_pretrained(tmp_path / "vlm").eval()
    pool = world.pool("scoring").subset(np.arange(4))
    ids = world.tokenizer([prompt(world.tokenizer, 1, 16)] * 4, add_special_tokens=False, return_tensors="pt").input_ids
    px = pixel_values(pool.images_NHWC)
    with torch.no_grad():
        assert torch.equal(vlm(input_ids=ids, pixel_values=px).logits, again(input_ids=ids, pixel_values=px).logits)


def test_training_forward_equals_the_models_own_forward(world):
    vlm = world.source("small").vlm.model
    pool = world.pool("scoring").subset(np.arange(3))
    ids = world.tokenizer([prompt(world.tokenizer, 1, 16)] * 3, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        full = vlm(input_ids=ids, pixel_values=pixel_values(pool.images_NHWC)).logits
        cached = vlm_logits(vlm, ids, tower_states(vlm.model.vision_tower, pool.images_NHWC, -1))
    assert torch.allclose(full, cached, atol=1e-5)


def test_processor_path_matches_the_fast_path(world):
    processor = LlavaProcessor.from_pretrained(world.dirs["vlm-small"])
    pool = world.pool("scoring").subset(np.arange(2))
    text = f"{world.tokenizer.bos_token} {world.tokenizer.image_token} describe what you see . answer :"
    out = processor(images=[Image.fromarray(im) for im in pool.images_NHWC], text=[text] * 2, return_tensors="pt",
                    add_special_tokens=False)
    assert torch.allclose(out["pixel_values"], pixel_values(pool.images_NHWC), atol=1e-6)
    expected = world.tokenizer([prompt(world.tokenizer, 1, 16)], add_special_tokens=False).input_ids[0]
    assert out["input_ids"][0].tolist() == expected
    adapter = world.source("small").vlm  # the chat template lays the turn out as training did
    for n, question in ((1, DESCRIBE), (3, SHARED)):
        enc = adapter.encode([list(pool.images_NHWC[:1]) * n], question, ANSWER_PREFIX)
        assert enc["input_ids"][0].tolist() == world.tokenizer(prompt(world.tokenizer, n, 16),
                                                               add_special_tokens=False).input_ids


def test_steering_at_the_sae_layer_reaches_the_projector(world):
    vlm = world.source("small").vlm.model
    assert world.sae_layer < vlm.model.vision_tower.config.num_hidden_layers  # before the read layer
    layer = vlm.model.vision_tower.encoder.layers[world.sae_layer - 1]
    seen = []
    hook = vlm.model.multi_modal_projector.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    px = pixel_values(np.full((2, 32, 32, 3), 255, np.uint8))
    ids = world.tokenizer([prompt(world.tokenizer, 1, 16)] * 2, add_special_tokens=False, return_tensors="pt").input_ids
    direction = world.source("small").sae().W_dec[:2] * 5
    with torch.no_grad():
        vlm(input_ids=ids, pixel_values=px)
        with steer(layer, direction * 0):
            vlm(input_ids=ids, pixel_values=px)
        with steer(layer, direction):
            vlm(input_ids=ids, pixel_values=px)
    hook.remove()
    plain, zero, steered = seen
    assert torch.equal(plain, zero)
    assert (steered - plain).abs().amax(dim=(1, 2)).min() > 1e-2  # every row changed


def test_steer_adds_exactly_the_vector_at_the_chosen_positions():
    layer = torch.nn.Identity()
    x = torch.zeros(3, 4, 2)
    vectors = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    positions = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    with steer(layer, vectors, positions):
        out = layer(x)
    assert torch.equal(out, vectors[:, None, :] * positions[:, :, None])
    assert torch.equal(layer(x), x)  # removed on exit


def test_scorer_round_trip_and_independence(world):
    scorer = world.source("small").scorer()  # in the dtype measurements take (`benchmark.numerics`)
    again = Scorer.load(world.dirs["scorer"])
    again.model.to(scorer.dtype)
    assert torch.equal(scorer.encode_texts(["red", "a small cross"]), again.encode_texts(["red", "a small cross"]))
    tower_weights = {tuple(p.shape): p for p in world.tower().parameters()}
    for p in scorer.model.visual.parameters():  # no weight is shared with the explained tower
        if tuple(p.shape) in tower_weights:
            assert not torch.equal(p, tower_weights[tuple(p.shape)])


def test_interrupted_stage_leaves_nothing_and_resumes(tmp_path):
    calls = []

    def crash(d):
        (d / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    def build(d):
        calls.append(1)
        (d / "whole.bin").write_bytes(b"y")
        return {"n": 1}

    with pytest.raises(KeyboardInterrupt):
        cached_stage(tmp_path, "s", {"a": 1}, crash)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    dpath, meta = cached_stage(tmp_path, "s", {"a": 1}, build)
    again, _ = cached_stage(tmp_path, "s", {"a": 1}, build)
    assert again == dpath and meta["n"] == 1 and calls == [1] and (dpath / "whole.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == [dpath.name]


def test_cli_prints_the_report_as_the_last_json_line(world, capsys):
    assert main(["world", "build", "--preset", "tiny", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["caption_recall"]) == set(world.config.lms)
    assert report["build_seconds"]["total"] == pytest.approx(sum(v for k, v in report["build_seconds"].items()
                                                                 if k != "total"), abs=0.05)
    for key in ("scorer_retrieval_top1", "sae_fve", "sae_alive_fraction", "aligned_features", "steering_sanity",
                "topk_sanity"):
        assert key in report
    assert report["load_seconds"] < 10
    assert set(report["run_configs"]) == set(world.config.lms)


def test_saved_tokenizer_does_not_truncate_long_prompts(world):
    five_images = prompt(world.tokenizer, 5, 16)
    ids = world.tokenizer(five_images, add_special_tokens=False).input_ids
    assert len(ids) == len(five_images.split())
    assert world.tokenizer.backend_tokenizer.truncation is None


def test_naming_rates_count_whole_word_names_and_nothing_per_category():
    aligned = pd.DataFrame({"concept": ["red", "red", "blue", "striped"], "category": ["colour"] * 3 + ["texture"]})
    texts = ["red", "reddish small", "nothing", "large striped"]
    report = naming_rates(texts, aligned)
    assert report == {"colour": {"named": pytest.approx(1 / 3), "nothing": pytest.approx(1 / 3), "n": 3},
                      "texture": {"named": 1.0, "nothing": 0.0, "n": 1}}


def test_top_k_training_views_look_like_feature_masks():
    rng = np.random.default_rng(0)
    objects = np.zeros((200, 16), bool)
    objects[:, :4] = True
    scene = objects.copy()
    scene[:, 4:6] = True  # another object in the same image
    masks = view_masks(objects, scene, rng)
    assert (masks["whole"] == objects).all()
    partial = masks["partial"]
    assert (partial[:, :4].any(1)).all() and not partial[:, 4:6].any()  # part of the object, never the other one
    assert partial[:, :4].sum() < objects.sum() and partial[:, 6:].any()  # thinned, with stray background patches
    background = thinned(~scene, rng)
    assert not background[:, :6].any() and background.any(1).all()  # background only, never empty-handed
    assert not thinned(np.zeros((3, 16), bool), rng).any()


def test_shared_answer_names_only_what_every_visible_object_has():
    from benchmark.world.concepts import ObjectSpec
    a = ObjectSpec("red", "plain", "circle", "large", "top left")
    b = ObjectSpec("red", "striped", "circle", "large", "top right")
    field = ObjectSpec("red", "plain")
    assert shared_answer([a, b]) == "large red circle"
    assert shared_answer([a, field]) == "red plain"
    image = np.full((2, 4, 4, 3), 200, np.uint8)
    keep = np.array([[True, False, False, False], [False, False, False, True]])
    masked = mask_to_patches(image, keep, 2)
    assert (masked[0, :2, :2] == 200).all() and masked[0, 2:].sum() == 0 and (masked[1, 2:, 2:] == 200).all()
