"""The paper's two other evaluations on real models: a run config naming a `[generator]` (a tiny
diffusers pipeline) and a `[segmenter]` (tiny Grounding DINO + SAM, or CLIPSeg), all saved with
`save_pretrained`, scores generation AUROC (with MAD) and localization IoU (with precision and
recall) as finite numbers; a second run loads no model at all; without them both are refused."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.models.scorer import Scorer
from benchmark.testing import tables, write_toml
from tests.sources.test_components import refuse_loading

COLUMNS = ("generation_auroc", "generation_mad", "localization_iou", "localization_precision", "localization_recall")

SEGMENTERS = {  # c: the session's tiny component checkpoints (`components` in tests/conftest.py)
    "grounding-sam": lambda c: {"kind": "grounding-sam", "detector": c["gdino"], "sam": c["sam"],
                                "box_threshold": 0.0, "text_threshold": 0.0},
    "clipseg": lambda c: {"kind": "clipseg", "path": c["clipseg"], "threshold": 0.5},
}


@pytest.mark.parametrize("segmenter", SEGMENTERS)
def test_generation_and_localization_on_real_models_then_from_the_caches(files, components, tmp_path, monkeypatch,
                                                                         capsys, segmenter):
    models = {**tables(files), "generator": {"kind": "diffusers", "path": components["sd"], "steps": 2},
              "segmenter": SEGMENTERS[segmenter](components)}
    toml = write_toml(tmp_path / "run.toml", {"features": "0:4", "method": "topk,steering",
                                              "metrics": "generation-auroc,localization-iou"}, models)
    args = ["--config", toml, "--out", str(tmp_path / "out")]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    scores = pd.read_csv(run_dir / "scores.csv")
    alive = scores.dropna(subset=["generation_auroc"])
    assert len(alive) > 0
    for column in ("generation_auroc", "localization_iou", "localization_recall"):
        assert np.isfinite(alive[column]).all(), column
    assert ((alive.generation_auroc >= 0) & (alive.generation_auroc <= 1)).all()
    source = json.loads((run_dir / "run.json").read_text())["source"]
    assert {"generator", "segmenter"} <= set(source["identity"]) and source["capabilities"] == ["generator", "segmenter"]
    first = (run_dir / "scores.csv").read_text()

    refuse_loading(monkeypatch, "diffusers:AutoPipelineForText2Image", "diffusers:DiffusionPipeline",
                   "transformers:GroundingDinoForObjectDetection", "transformers:SamModel",
                   "transformers:CLIPSegForImageSegmentation")
    monkeypatch.setattr("benchmark.sources.source.load_vlm", lambda *a, **k: pytest.fail("a cached run loaded the VLM"))
    monkeypatch.setattr(Scorer, "open", lambda *a, **k: pytest.fail("a cached run loaded the scorer"))
    assert main(args) == 0
    assert (run_dir / "scores.csv").read_text() == first


def test_without_a_generator_or_segmenter_both_are_refused_in_one_line(files, tmp_path, capsys):
    toml = write_toml(tmp_path / "run.toml", {"features": "0:2", "method": "topk",
                                              "metrics": "generation-auroc,localization-iou"}, tables(files))
    assert main(["--config", toml, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: generation-auroc, localization-iou: need generator and segmenter, which source sae does not "
                   "have; a run config names one in [generator] and [segmenter]"]
    assert not (tmp_path / "out").exists()


def test_a_component_that_is_not_there_is_refused_before_anything_runs(files, tmp_path, capsys):
    models = {**tables(files), "generator": {"kind": "diffusers", "path": str(tmp_path / "missing")}}
    toml = write_toml(tmp_path / "run.toml", {"features": "0:2", "method": "topk", "metrics": "generation-auroc"},
                      models)
    assert main(["--config", toml, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: [generator] path {tmp_path / 'missing'}: no such directory"
