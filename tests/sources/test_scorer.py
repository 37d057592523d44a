"""The scorer by open_clip name: a model name with a local checkpoint file loads the same weights."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from benchmark.models.scorer import WEIGHTS, Scorer
from benchmark.registry import UsageError


def test_open_by_name_and_checkpoint_file_matches_the_directory(world):
    dpath = world.dirs["scorer"]
    (config,) = [p for p in dpath.glob("*.json") if "embed_dim" in json.loads(p.read_text())]
    open_clip.add_model_config(config)  # what a user's open_clip already knows for ViT-L-14
    by_name = Scorer.open(config.stem, str(dpath / WEIGHTS))
    texts = ["red", "a small cross"]
    assert torch.equal(by_name.encode_texts(texts), Scorer.load(dpath).encode_texts(texts))
    images = world.pool("scoring").images_NHWC[:2]  # the world's own pool, in memory
    big = images.repeat(2, axis=1).repeat(2, axis=2)  # another size is resized to the model's
    assert by_name.encode_images(big).shape == by_name.encode_images(images).shape


@pytest.mark.parametrize("model, pretrained, message", [
    ("ViT-L-15", None, "did you mean .*ViT-L-14"),
    ("ViT-L-14", "no-such-tag", "neither a file nor a known tag"),
])
def test_bad_names_are_usage_errors(model, pretrained, message):
    with pytest.raises(UsageError, match=message):
        Scorer.open(model, pretrained)


def test_a_scorer_made_to_be_trained_does_not_warn_of_random_weights(tmp_path, caplog):
    """open_clip's 'No pretrained weights loaded' is expected when the world makes its scorer; the
    world build's output should not read as a failure. Opening one without weights still warns."""
    config = {"embed_dim": 16, "vision_cfg": {"image_size": 28, "patch_size": 7, "width": 32, "layers": 1,
                                              "head_width": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    with caplog.at_level("WARNING"):
        Scorer.create(tmp_path, "quiet-test-scorer", config)
        assert "No pretrained weights loaded" not in caplog.text
        open_clip.create_model("quiet-test-scorer", pretrained=None)
        assert "No pretrained weights loaded" in caplog.text
