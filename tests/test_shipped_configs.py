"""The shipped configs (`configs/`) of the seed paper's Gemma-3 setup and Pach et al.'s LLaVA setup
load as written: with tiny random-weight stand-ins saved at the paths they name (towers as deep as
the real ones, the SAE files as their authors write them), each opens as a source on the hidden
state its paper names, with the paper's coefficients, slices and components."""
from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import config_arguments, config_models, parser
from benchmark.sources.source import Source
from tests.test_adapters import SIZE, save_tiny_checkpoint
from tests.test_layer_conventions import tiny_sae, write_dictionary_learning
from tests.tiny_components import save_tiny_diffusers, save_tiny_grounding_dino, save_tiny_sam

CONFIGS = Path(__file__).parent.parent / "configs"
EXPECTED = {  # config -> (hidden state steered, its derivation, run options, components)
    **{f"seed-gemma3-{size}.toml": (17, "config.json trainer.layer 16: the output of block 16, hidden state 17",
                                    {"steering_coeff": 200.0, "hybrid_coeff": 50.0, "intervention": "add",
                                     "features": "0:1500", "tune_features": "0:500", "tune": "clip-score"},
                                    ["generator", "segmenter", "vocabulary"]) for size in ("4b", "12b", "27b")},
    "pach-llava-1.5-7b.toml": (23, "[sae] layer 23", {"steering_coeff": 100.0, "intervention": "clamp",
                                                      "empty": "white", "features": "0:1000"}, ["vocabulary"]),
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """Every file the shipped configs name, as tiny stand-ins at the same relative paths."""
    root = tmp_path_factory.mktemp("paper")
    for size in ("4b", "12b", "27b"):
        save_tiny_checkpoint("gemma3", root / f"models/gemma-3-{size}-it", tower_blocks=27)  # SigLIP so400m's depth
    save_tiny_checkpoint("llava", root / "models/llava-1.5-7b-hf", tower_blocks=24)  # CLIP ViT-L/14's depth
    write_dictionary_learning(root / "saes/gemma3-siglip/layer16/trainer_0", tiny_sae(), layer=16)
    tiny_sae().save(root / "saes/llava-clip-l336-layer22")  # a SAELens folder that names no hook
    save_tiny_diffusers(root / "models/stable-diffusion-3.5-large")
    save_tiny_grounding_dino(root / "models/grounding-dino-base")
    save_tiny_sam(root / "models/sam-vit-huge")
    rng = np.random.default_rng(0)
    for split in ("imagenet-train", "imagenet-val"):
        for label in ("goldfish", "tench"):
            (root / "data" / split / label).mkdir(parents=True)
            for i in range(3):
                image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / "data" / split / label / f"{i}.png")
    return root


def test_every_shipped_config_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_config_opens_on_its_papers_hidden_state(standins, tmp_path, monkeypatch, name):
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    config = standins / name
    shutil.copy(CONFIGS / name, config)
    layer, derivation, options, capabilities = EXPECTED[name]
    run = parser()._subparsers._group_actions[0].choices["run"]
    args = vars(run.parse_args(config_arguments(str(config), run)))
    assert {k: args[k] for k in options} == options
    source = Source(config_models(str(config)))
    described = source.describe()
    assert (described["layer"], described["layer_from"]) == (layer, derivation)
    assert described["capabilities"] == capabilities
    written = tomllib.loads(config.read_text())["vlm"]["path"]
    assert described["models"]["vlm"]["path"] == str((standins / written).resolve())  # read from the config's folder
    source.vlm.layer(source.layer)  # the state reaches the language model
