"""The shipped configs (`configs/`) of the seed paper's Gemma-3 setup (layers 6, 16 and 24), InternVL3-14B
under the seed protocol, and Pach et al.'s LLaVA setup load as written: with tiny random-weight
stand-ins saved at the paths they name (towers as deep as the real ones, the SAE files as their
authors write them, ImageNet as a `save_to_disk` dataset with test and validation splits), each opens
as a source on the hidden state its paper names, with the paper's coefficients, slices, protocol and
components, and each runs end to end on CPU with every metric its source offers."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import tomllib
from PIL import Image

from benchmark.cli import main
from benchmark.commands.run import run_options
from benchmark.config.read import read_run_file
from benchmark.models.scorer import Scorer
from benchmark.sources.source import Source
from tests.sources.test_adapters import SIZE, save_tiny_checkpoint
from tests.sources.test_layer_conventions import tiny_sae, write_dictionary_learning
from tests.tiny_components import save_tiny_diffusers, save_tiny_grounding_dino, save_tiny_sam2

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SEED_OPTIONS = {"protocol": "seed", "steering_coeff": 200.0, "hybrid_coeff": 50.0, "intervention": "add",
                "features": "0:1500", "tune_features": "0:500", "tune": "clip-score"}


def dictionary_learning_layer(layer: int) -> str:
    return f"config.json trainer.layer {layer}: the output of block {layer}, hidden state {layer + 1}"


EXPECTED = {  # config -> (hidden state steered, its derivation, run options, components)
    **{f"seed-gemma3-{size}.toml": (17, dictionary_learning_layer(16), SEED_OPTIONS, ["generator", "segmenter"])
       for size in ("4b", "12b", "27b")},
    **{f"seed-gemma3-4b-layer{layer}.toml": (layer + 1, dictionary_learning_layer(layer), SEED_OPTIONS,
                                             ["generator", "segmenter"]) for layer in (6, 24)},
    "seed-internvl3-14b.toml": (15, dictionary_learning_layer(14), SEED_OPTIONS, ["generator", "segmenter"]),
    "pach-llava-1.5-7b.toml": (23, "[sae] layer 23", {"protocol": "featurebench", "steering_coeff": 100.0,
                                                      "intervention": "clamp", "empty": "white", "features": "0:1000"},
                               ["vocabulary"]),
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """Every file the shipped configs name, as tiny stand-ins at the same relative paths."""
    root = tmp_path_factory.mktemp("paper")
    for size in ("4b", "12b", "27b"):
        save_tiny_checkpoint("gemma3", root / f"models/gemma-3-{size}-it", tower_blocks=27)  # SigLIP so400m's depth
    save_tiny_checkpoint("llava", root / "models/llava-1.5-7b-hf", tower_blocks=24)  # CLIP ViT-L/14's depth
    save_tiny_checkpoint("internvl", root / "models/InternVL3-14B-hf", tower_blocks=24)  # InternViT-300M's depth
    for layer in (6, 16, 24):
        write_dictionary_learning(root / f"saes/gemma3-siglip/layer{layer}/trainer_0", tiny_sae(), layer=layer)
    write_dictionary_learning(root / "saes/internvl3-14b/layer14/trainer_0", tiny_sae(), layer=14)
    tiny_sae().save(root / "saes/llava-clip-l336-layer22")  # a SAELens folder that names no hook
    save_tiny_diffusers(root / "models/stable-diffusion-3.5-medium")
    save_tiny_grounding_dino(root / "models/grounding-dino-base")
    save_tiny_sam2(root / "models/sam2.1-hiera-large")
    rng = np.random.default_rng(0)
    for split in ("imagenet-train", "imagenet-val"):
        for label in ("goldfish", "tench"):
            (root / "data" / split / label).mkdir(parents=True)
            for i in range(6):
                image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / "data" / split / label / f"{i}.png")
    scorer = {"embed_dim": 16, "vision_cfg": {"image_size": SIZE, "patch_size": 14, "width": 32, "layers": 1,
                                              "head_width": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    Scorer.create(root / "models/tiny-scorer", "tiny-scorer", scorer).save_weights(root / "models/tiny-scorer")
    images = lambda n: [Image.fromarray(rng.integers(0, 256, (SIZE, SIZE + 4 * (i % 2), 3), dtype=np.uint8))  # noqa: E731
                        for i in range(n)]  # some not square: the seed protocol resizes them whole
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"image": images(12)}),
                          "validation": datasets.Dataset.from_dict({"image": images(12)})}).save_to_disk(
        root / "data/imagenet")
    return root


def test_every_shipped_config_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_config_opens_on_its_papers_hidden_state(standins, tmp_path, monkeypatch, name):
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    config = standins / name
    shutil.copy(CONFIGS / name, config)
    layer, derivation, options, capabilities = EXPECTED[name]
    run, flags = run_options()
    run_file = read_run_file(config)
    args = vars(run.parse_args(run_file.arguments(flags)))
    assert {k: args[k] for k in options} == options
    source = Source(run_file.models, protocol=args["protocol"])
    described = source.describe()
    assert described["protocol"] == options["protocol"]
    assert (described["layer"], described["layer_from"]) == (layer, derivation)
    assert described["capabilities"] == capabilities
    written = tomllib.loads(config.read_text())["vlm"]["path"]
    assert described["models"]["vlm"]["path"] == str((standins / written).resolve())  # read from the config's folder
    source.vlm.layer(source.layer)  # the state reaches the language model


@pytest.mark.parametrize("name", EXPECTED)
def test_shipped_config_runs_end_to_end_with_every_metric(standins, tmp_path, monkeypatch, name):
    """Each config as written, but for the scorer (a tiny open_clip model: ViT-L/14 would download),
    the generator's steps and size (the stand-in is a 16 px pipeline) and the slices, which the flags
    shrink to the stand-ins' 16 latents."""
    monkeypatch.setenv("FEATUREBENCH_CACHE", str(tmp_path / "cache"))
    config = standins / f"run-{name}"
    text = (CONFIGS / name).read_text().replace("steps = 28", "steps = 2").replace("size = 512", "size = 16")
    config.write_text(re.sub(r"\[scorer\]\n(.+\n)+", '[scorer]\nmodel = "models/tiny-scorer"\n', text))
    tuned = ["--tune-features", "0:2"] if "tune" in EXPECTED[name][2] else []
    assert main(["--config", str(config), "--features", "0:4", *tuned, "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    scores = pd.read_csv(run_dir / "scores.csv")
    metrics = {"seed": ["detection_auroc", "simulation_r", "clip_score", "generation_auroc", "localization_iou"],
               "featurebench": ["detection_auroc", "simulation_r", "clip_score"]}
    protocol = EXPECTED[name][2]["protocol"]
    assert set(metrics[protocol]) <= set(scores.columns) and set(scores.protocol) == {protocol}
    assert set(scores.method) == set(tomllib.loads((CONFIGS / name).read_text())["method"].split(","))
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["protocol"] == protocol and (meta["tuning"] is not None) == bool(tuned)
